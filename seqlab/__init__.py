"""seqlab: how recurrent networks and transformers differ over long sequences."""
