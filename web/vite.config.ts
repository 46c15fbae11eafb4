import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// Where `npm run dev` and `npm run preview` send /api (a running `chatkeep serve`).
const apiTarget = process.env.CHATKEEP_URL ?? "http://127.0.0.1:8000";

const proxy = {
  "/api": { target: apiTarget, changeOrigin: true },
  "/healthz": { target: apiTarget, changeOrigin: true },
};

export default defineConfig({
  base: "/",
  plugins: [react()],
  server: { proxy },
  preview: { proxy },
  build: {
    // The Python package serves this directory; it is checked in, so the build is deterministic:
    // content-hashed file names, no source maps, no absolute paths or timestamps in the output.
    outDir: "../src/chatkeep/web/dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    target: "es2022",
    reportCompressedSize: true,
    rolldownOptions: {
      output: {
        // Libraries in chunks of their own: they change only when the dependencies do, so a change to the app
        // touches one small file of the checked-in dist (and browsers keep the rest cached).
        codeSplitting: {
          groups: [
            // Runs before the AI SDK's chunk, which reads it when it loads (see src/jitless.ts).
            { name: "jitless", test: /[\\/]src[\\/]jitless\.ts$/ },
            { name: "react", test: /[\\/]node_modules[\\/](react|react-dom|scheduler)[\\/]/ },
            { name: "ai-sdk", test: /[\\/]node_modules[\\/](ai|@ai-sdk|@standard-schema|zod|eventsource-parser|swr|throttleit|use-sync-external-store|dequal)[\\/]/ },
            // All but the highlighter, which stays in the chunk loaded on demand, when the first code block naming
            // a language shows (src/highlight.ts).
            { name: "markdown", test: /[\\/]node_modules[\\/](?!lowlight[\\/]|highlight\.js[\\/])/ },
          ],
        },
      },
    },
  },
});
