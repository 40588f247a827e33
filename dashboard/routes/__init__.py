"""The dashboard's routers (each route declares its role gate, see ``dashboard.policy``)."""
