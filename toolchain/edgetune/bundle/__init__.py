"""On-device bundles: model, tokenizer, labels, golden examples, model card and a sealed manifest."""
