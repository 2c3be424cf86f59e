__version__ = "0.0.1"

# The one hand-written file of the package (nbdev-export keeps only the version line): the top-level alias of
# `foundation_jets.models.heads.load_pretrained`, importing the model code only when called.


def load_pretrained(path):
    "Load a saved model or tokenizer of this package (see `foundation_jets.models.heads.load_pretrained`)."
    from foundation_jets.models.heads import load_pretrained as load

    return load(path)
