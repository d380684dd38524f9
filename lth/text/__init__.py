"""What only the text family (BERT on GLUE) needs: the GLUE tasks (`glue`, torch-free) and their tokenised,
length-grouped batches and evaluation (`data`). The shared mechanisms in `lth` never import it."""
