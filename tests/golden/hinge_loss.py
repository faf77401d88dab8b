# hinge: generated from its spec.

NAME = 'hinge'
SPEC_HASH = '2933cfe28d2b3df9'


def _loss(u, t, P):
    m = t*u
    loss = torch.relu(1 - m)
    return loss


def _loss_and_grad(u, t, P, out, c, _pool=None):
    _b0, _b1, _b2 = _buffers(_pool, u, 'eee')
    m = torch.mul(t, u, out=_b0)
    _t0 = torch.sub(1, m, out=_b0)
    loss = torch.clamp_min(_t0, 0, out=_b1)
    torch.neg(t, out=_b2)
    torch.gt(_t0, 0, out=_b0)
    grad = _times(torch.mul(_b2, _b0, out=out), c)
    return loss, grad


KERNEL = Kernel(NAME, SPEC_HASH, 'elementwise', 'sign', (), _loss, _loss_and_grad)


def _params():
    """Checks and packs the parameters of hinge."""
    return _Params()


class _Params:
    def __init__(self, **values):
        self.__dict__.update(values)

    def __repr__(self):
        return ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())


class HingeLoss(torch.nn.Module):
    __doc__ = 'Hinge loss: max(0, 1 - m), the soft-margin SVM loss.\n\nConvex, classification-calibrated, not differentiable at m = 1 (not smooth).\nNo parameters.\nCortes & Vapnik, 1995, Support-Vector Networks.'

    def __init__(self, *, weight=None, ignore_index=None, reduction="mean",
                 backend="auto", validate=True, class_group=None, inplace_grad=False):
        super().__init__()
        self.params = _params()
        self.register_buffer("weight", None if weight is None else torch.as_tensor(_constant_tensor(f"{NAME}: weight", weight)))
        self.ignore_index, self.reduction, self.backend, self.validate = ignore_index, reduction, backend, validate
        self.class_group, self.inplace_grad = class_group, inplace_grad
        if reduction not in REDUCTIONS:
            raise LossParamError(f"{NAME}: reduction must be one of {REDUCTIONS}, got {reduction!r}")

    def forward(self, input, target, sample_weight=None):
        return apply_loss(KERNEL, self.params, input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction, sample_weight=sample_weight, backend=self.backend,
                          validate=self.validate, class_group=self.class_group, inplace_grad=self.inplace_grad)

    def __reduce_ex__(self, protocol):
        return reduce_module(self, protocol) or super().__reduce_ex__(protocol)

    def extra_repr(self):
        return f"{self.params!r}, reduction={self.reduction!r}"


def hinge_loss(input, target, *, weight=None, ignore_index=None,
        reduction="mean", sample_weight=None, backend="auto", validate=True, class_group=None, inplace_grad=False):
    """Functional form of HingeLoss."""
    return apply_loss(KERNEL, _params(), input, target, weight=weight, ignore_index=ignore_index,
                      reduction=reduction, sample_weight=sample_weight, backend=backend, validate=validate,
                      class_group=class_group, inplace_grad=inplace_grad)
