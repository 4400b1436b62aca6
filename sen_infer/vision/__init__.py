"""From frames to people: video decoding with its clock (`decode`), person detection (`detection`) and
tracking (`tracking`). Knows nothing of galleries or models."""
