"""Fakes of what lies outside Gadget Code (an OpenAI-compatible LLM server)."""
