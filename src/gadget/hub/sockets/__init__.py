"""Where events enter the hub: the Socket.IO connect/disconnect and event handlers."""
