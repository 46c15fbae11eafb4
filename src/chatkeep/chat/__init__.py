"""Chat turns: planning a turn against the stored tree, running the model and its tools, streaming and storing
the reply, and thread titles. Sits between the web layer and the store and providers."""
