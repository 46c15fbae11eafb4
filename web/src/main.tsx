import "./jitless";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { initToken } from "./api";
import { App } from "./App";
import "./styles.css";

// Before anything is requested: take `?token=…` from the address (kept in localStorage, removed from the URL).
initToken();

const root = document.getElementById("root");
if (!root) throw new Error("index.html has no #root element");
createRoot(root).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
