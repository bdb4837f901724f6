"""Stand-ins for what lies outside Gadget Code (an LLM server, the network), and process tools."""
