"""An assignment-2 layers.py as a student starts it, written for these tests in the shape of
the course's stubs: relu is finished, affine_backward half done (db still None), the rest
untouched (each TODO section holds a bare ``pass``, or raises NotImplementedError), and
layernorm_forward not written at all. The CS231n checker must say 'not implemented' for
every unfinished function and check relu.
"""
from builtins import range

import numpy as np


def affine_forward(x, w, b):
    """Computes the forward pass for an affine (fully-connected) layer."""
    out = None
    ###########################################################################
    # TODO: Implement the affine forward pass. Store the result in out.       #
    ###########################################################################
    out = x.reshape(x.shape[0], -1).dot(w) + b
    ###########################################################################
    #                             END OF YOUR CODE                            #
    ###########################################################################
    cache = (x, w, b)
    return out, cache


def affine_backward(dout, cache):
    """Computes the backward pass for an affine layer."""
    x, w, b = cache
    dx, dw, db = None, None, None
    ###########################################################################
    # TODO: Implement the affine backward pass.                               #
    ###########################################################################
    dx = dout.dot(w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T.dot(dout)
    ###########################################################################
    #                             END OF YOUR CODE                            #
    ###########################################################################
    return dx, dw, db


def relu_forward(x):
    """Computes the forward pass for a layer of rectified linear units (ReLUs)."""
    out = np.maximum(x, 0)
    cache = x
    return out, cache


def relu_backward(dout, cache):
    """Computes the backward pass for a layer of rectified linear units (ReLUs)."""
    return dout * (cache > 0)


def softmax_loss(x, y):
    """Computes the loss and gradient for softmax classification."""
    pass


def svm_loss(x, y):
    """Computes the loss and gradient using for multiclass SVM classification."""
    loss, dx = None, None
    ###########################################################################
    # TODO: Copy over your solution from A1.                                  #
    ###########################################################################
    pass
    ###########################################################################
    #                             END OF YOUR CODE                            #
    ###########################################################################
    return loss, dx


def batchnorm_forward(x, gamma, beta, bn_param):
    """Forward pass for batch normalization."""
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)

    N, D = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(D, dtype=x.dtype))

    out, cache = None, None
    if mode == "train":
        #######################################################################
        # TODO: Implement the training-time forward pass for batch norm.      #
        #######################################################################
        pass
        #######################################################################
        #                           END OF YOUR CODE                          #
        #######################################################################
    elif mode == "test":
        pass
    else:
        raise ValueError('Invalid forward batchnorm mode "%s"' % mode)

    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, cache


def batchnorm_backward(dout, cache):
    """Backward pass for batch normalization."""
    dx, dgamma, dbeta = None, None, None
    pass
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout, cache):
    """Alternative backward pass for batch normalization."""
    raise NotImplementedError("batchnorm_backward_alt: TODO")


def layernorm_backward(dout, cache):
    """Backward pass for layer normalization."""
    dx, dgamma, dbeta = None, None, None
    pass
    return dx, dgamma, dbeta


def dropout_forward(x, dropout_param):
    """Forward pass for inverted dropout."""
    p, mode = dropout_param["p"], dropout_param["mode"]
    if "seed" in dropout_param:
        np.random.seed(dropout_param["seed"])

    mask = None
    out = None

    if mode == "train":
        pass
    elif mode == "test":
        pass

    cache = (dropout_param, mask)
    out = out.astype(x.dtype, copy=False) if out is not None else out
    return out, cache


def dropout_backward(dout, cache):
    """Backward pass for inverted dropout."""
    dropout_param, mask = cache
    mode = dropout_param["mode"]

    dx = None
    if mode == "train":
        pass
    elif mode == "test":
        dx = dout
    return dx


def conv_forward_naive(x, w, b, conv_param):
    """A naive implementation of the forward pass for a convolutional layer."""
    out = None
    pass
    cache = (x, w, b, conv_param)
    return out, cache


def conv_backward_naive(dout, cache):
    """A naive implementation of the backward pass for a convolutional layer."""
    dx, dw, db = None, None, None
    pass
    return dx, dw, db


def max_pool_forward_naive(x, pool_param):
    """A naive implementation of the forward pass for a max-pooling layer."""
    out = None
    pass
    cache = (x, pool_param)
    return out, cache


def max_pool_backward_naive(dout, cache):
    """A naive implementation of the backward pass for a max-pooling layer."""
    dx = None
    pass
    return dx


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Computes the forward pass for spatial batch normalization."""
    out, cache = None, None
    pass
    return out, cache


def spatial_batchnorm_backward(dout, cache):
    """Computes the backward pass for spatial batch normalization."""
    dx, dgamma, dbeta = None, None, None
    pass
    return dx, dgamma, dbeta


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    """Computes the forward pass for spatial group normalization."""
    raise NotImplementedError


def spatial_groupnorm_backward(dout, cache):
    """Computes the backward pass for spatial group normalization."""
    raise NotImplementedError
