"""The coding agent: a model, tools confined to a workspace, and a short loop."""
