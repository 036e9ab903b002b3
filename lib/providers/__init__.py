"""Providers: every model is an OpenAI-compatible endpoint.

Owns the endpoint files (`endpoints`), one streamed completion and its failure classification
(`stream`), several streams at once (`fanout`), the embedded llama.cpp server (`local_server`)
and the ask action that stores each answer (`chat`)."""
