"""Response and request models of dashboard routes, one module per router."""
