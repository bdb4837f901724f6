"""The drone: a Socket.IO worker that runs a coding agent in a workspace for the hub."""
