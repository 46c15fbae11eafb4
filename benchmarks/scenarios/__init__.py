"""The scenarios of issue #7, one module each; each ``run(ctx, backend)`` returns report rows."""
