"""Analysis: embeddings of answers (`embeddings`), the views over a scope of stored answers —
map, clusters, canned templates, divergence, deflection rates (`views`) — and their plotly
figures (`charts`)."""
