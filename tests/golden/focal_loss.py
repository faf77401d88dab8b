# focal: generated from its spec.

NAME = 'focal'
SPEC_HASH = '8bafaf2640fab80d'


def _loss(z, t, P):
    z_y = _at_target(z, t)
    lse = _row_lse(z)
    _t0 = -lse + z_y
    loss = -_t0*_pow(-torch.expm1(_t0), P.gamma)
    return loss


def _loss_and_grad(z, t, P, out, c, _pool=None):
    _b0, _b1, _b2, _b3, _b4, _b5, _b6 = _buffers(_pool, z, 'rrrrrrR')
    C = _num_classes(z)
    z_y = _at_target(z, t)
    _m = _row_max(z)
    _e = _exp_shifted(z, _m, out)
    _s = _row_sum(_e)
    torch.log(_s, out=_b0)
    lse = torch.add(_m, _b0, out=_b0)
    p_t = torch.div(_at_target(_e, t), _s, out=_b1)
    torch.neg(lse, out=_b0)
    _t0 = torch.add(_b0, z_y, out=_b0)
    torch.expm1(_t0, out=_b2)
    torch.neg(_b2, out=_b2)
    _t1 = torch.pow(_b2, P.gamma, out=_b2)
    torch.mul(_t1, P.gamma, out=_b3)
    _logratio(_t0, _b4, _b5, _b6)
    torch.mul(_b3, _b4, out=_b3)
    torch.exp(_t0, out=_b4)
    torch.mul(_b3, _b4, out=_b3)
    _t2 = torch.sub(_b3, _t1, out=_b3)
    _t3 = torch.neg(_t2, out=_b4)
    torch.neg(_t0, out=_b0)
    loss = torch.mul(_b0, _t1, out=_b0)
    torch.mul(_t3, p_t, out=_b1)
    _own = torch.add(_t2, _b1, out=_b1)
    torch.div(_t3, _s, out=_b2)
    grad = _affine(_e, _b2, 0, z, 0, c)
    grad = _set_target(grad, t, _own, c)
    return loss, grad


KERNEL = Kernel(NAME, SPEC_HASH, 'row', 'index', (('gamma', None),), _loss, _loss_and_grad)


def _params(gamma=2.0):
    """Checks and packs the parameters of focal."""
    gamma = _number('focal.gamma', gamma)
    if not ((gamma >= 0)):
        raise LossParamError('focal: constraint violated: gamma >= 0' + f' (gamma = {gamma!r})')
    return _Params(gamma=gamma)


class _Params:
    def __init__(self, **values):
        self.__dict__.update(values)

    def __repr__(self):
        return ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())


class FocalLoss(torch.nn.Module):
    __doc__ = 'Focal loss: down-weights easy examples by (1 - p_t)^gamma.\n\nAdds a modulating factor (1 - p_t)^gamma to cross-entropy so that\nwell-classified examples contribute little; gamma = 0 is cross-entropy.\nThe paper tries gamma in [0, 5] and finds gamma = 2 best (with the\nalpha-balanced variant, alpha = 0.25; this multiclass form has no alpha).\nLin, Goyal, Girshick, He & Dollar, 2017, Focal Loss for Dense Object Detection.'

    def __init__(self, *, gamma=2.0, weight=None, ignore_index=-100, reduction="mean",
                 backend="auto", validate=True, class_group=None, inplace_grad=False):
        super().__init__()
        self.params = _params(gamma=gamma)
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


def focal_loss(input, target, *, gamma=2.0, weight=None, ignore_index=-100,
        reduction="mean", sample_weight=None, backend="auto", validate=True, class_group=None, inplace_grad=False):
    """Functional form of FocalLoss."""
    return apply_loss(KERNEL, _params(gamma=gamma), input, target, weight=weight, ignore_index=ignore_index,
                      reduction=reduction, sample_weight=sample_weight, backend=backend, validate=validate,
                      class_group=class_group, inplace_grad=inplace_grad)
