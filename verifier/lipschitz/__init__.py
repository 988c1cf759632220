"""Lipschitz certificates: global and local bounds of the margins' Lipschitz
constants, and the certified radius ``r(x) = m(x) / L``.

    global_lipschitz(graph, norm) -> GlobalLipschitz(margin (K, K), logit (K,), ...)
    local_lipschitz(graph, x, labels, eps, norm, method=) -> (B, K) constants on the balls
    certify(graph, x, labels, norm, local_eps=) -> [LipschitzCertificate]

Norms are 'l2' and 'linf' (the input norm). Every bound is a certified upper
bound (operator norms are never estimated from below); nodes without a rule
(Softmax, Sign) raise :class:`NoLipschitzRuleError`.
"""
from verifier.lipschitz.certify import HEADER, LipschitzCertificate, certify, margins
from verifier.lipschitz.errors import LipschitzError, NoLipschitzRuleError
from verifier.lipschitz.global_bound import NORMS, GlobalLipschitz, global_lipschitz
from verifier.lipschitz.local_bound import local_lipschitz

__all__ = ["HEADER", "LipschitzCertificate", "LipschitzError", "NORMS", "GlobalLipschitz",
           "NoLipschitzRuleError", "certify", "global_lipschitz", "local_lipschitz", "margins"]
