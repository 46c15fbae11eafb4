"""A tools module whose own code fails while it is imported, as one missing its configuration would
(tests/test_serve_model_server.py)."""

raise RuntimeError("set SHOP_API_URL first")
