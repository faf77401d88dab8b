# squentropy: generated from its spec.

NAME = 'squentropy'
SPEC_HASH = 'abc077aab1207775'


def _loss(z, t, P):
    C = _num_classes(z)
    z_y = _at_target(z, t)
    lse = _row_lse(z)
    r1 = _row_sum(_exclude_target(torch.square(z), t, 0.0))
    loss = lse - z_y + r1/((C - 1))
    return loss


def _loss_and_grad(z, t, P, out, c, _pool=None):
    _b0, _b1, _b2, _b3 = _buffers(_pool, z, 'rrcr')
    C = _num_classes(z)
    z_y = _at_target(z, t)
    _m = _row_max(z)
    _e = _exp_shifted(z, _m, out)
    _s = _row_sum(_e)
    torch.log(_s, out=_b0)
    lse = torch.add(_m, _b0, out=_b0)
    p_t = torch.div(_at_target(_e, t), _s, out=_b1)
    torch.square(z, out=_b2)
    r1 = _row_sum(_exclude_target_(_b2, t, 0.0))
    _t0 = 1/(C - 1)
    torch.mul(_t0, r1, out=_b3)
    torch.add(_b3, lse, out=_b0)
    loss = torch.sub(_b0, z_y, out=_b0)
    _own = torch.sub(p_t, 1, out=_b1)
    torch.reciprocal(_s, out=_b3)
    grad = _affine(_e, _b3, 2*_t0, z, 0, c)
    grad = _set_target(grad, t, _own, c)
    return loss, grad


KERNEL = Kernel(NAME, SPEC_HASH, 'row', 'index', (), _loss, _loss_and_grad)


def _params():
    """Checks and packs the parameters of squentropy."""
    return _Params()


class _Params:
    def __init__(self, **values):
        self.__dict__.update(values)

    def __repr__(self):
        return ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())


class SquentropyLoss(torch.nn.Module):
    __doc__ = 'Squentropy: cross-entropy plus the mean squared logit of wrong classes.\n\n-log p_y + (1/(C - 1)) sum_{j != y} z_j^2, on the raw logits. Convex in the\nlogits; a plug-in replacement for cross-entropy with better calibration.\nNo parameters (unlike the rescaled square loss).\nHui, Belkin & Wright, 2023, Cut your Losses with Squentropy.'

    def __init__(self, *, weight=None, ignore_index=-100, reduction="mean",
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


def squentropy_loss(input, target, *, weight=None, ignore_index=-100,
        reduction="mean", sample_weight=None, backend="auto", validate=True, class_group=None, inplace_grad=False):
    """Functional form of SquentropyLoss."""
    return apply_loss(KERNEL, _params(), input, target, weight=weight, ignore_index=ignore_index,
                      reduction=reduction, sample_weight=sample_weight, backend=backend, validate=validate,
                      class_group=class_group, inplace_grad=inplace_grad)
