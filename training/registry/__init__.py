"""The Django side of the matching model: model versions, training runs, promotion."""
