"""The spill router: one OpenAI-compatible endpoint; each request goes to a Ready engine pod or the hosted API."""
