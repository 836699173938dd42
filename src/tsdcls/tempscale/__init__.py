"""TempScale stage: temperature-scaled attention for long-text embeddings (arXiv 2410.24200).

``patch`` holds the exact, reversible temperature patch and ``load_encoder``; ``collapse`` the
length-collapse analysis; ``corpora`` the real offline texts (Wikipedia, Shakespeare, gensim's
test corpora) that every part of the stage loads the same way.
"""
