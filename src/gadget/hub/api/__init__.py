"""REST routers under /api: auth, projects, drones, chat sessions and turns."""
