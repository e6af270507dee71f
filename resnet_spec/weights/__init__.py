"""Weights: the state-dict formats of the peers (torchvision, timm, mmpretrain, pytorchcv, the Caffe release, ...)
and conversion between them.

* :mod:`~resnet_spec.weights._formats`: the formats (:data:`FORMATS`), :func:`convert_state_dict`,
  :func:`load_checkpoint`, and the keys and shapes a format holds for a network (:func:`format_layout`);
* :mod:`~resnet_spec.weights._caffe`: the authors' Caffe release, its layer names and blobs;
* :mod:`~resnet_spec.weights._ledger`: :class:`ConversionError` and the ledger every conversion keeps.

Every key and shape comes from the layout plan; a conversion uses every tensor once or raises
:class:`ConversionError` naming what is missing, left over or of the wrong shape.
"""

from ._caffe import caffe_block_names, caffe_params_to_state_dict
from ._formats import FORMATS, WeightFormat, convert_state_dict, format_layout, load_checkpoint, state_dict_layout
from ._ledger import ConversionError, FormatKey

__all__ = [
    "FORMATS",
    "ConversionError",
    "FormatKey",
    "WeightFormat",
    "caffe_block_names",
    "caffe_params_to_state_dict",
    "convert_state_dict",
    "format_layout",
    "load_checkpoint",
    "state_dict_layout",
]
