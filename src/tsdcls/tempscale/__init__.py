"""TempScale stage: temperature-scaled attention for long-text embeddings (arXiv 2410.24200).

``patch`` holds the exact, reversible temperature patch and ``load_encoder``; ``collapse`` the
length-collapse analysis; ``texts`` the real long texts (Wikipedia, Shakespeare) by token length.
"""
