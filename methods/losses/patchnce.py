"""PatchNCE (InfoNCE over patches of one image) as CUT defines it.

Follows contrastive-unpaired-translation@b3ac297:models/patchnce.py: positives on the diagonal,
negatives = the other sampled patches of the same image (or of the whole minibatch), the diagonal of
the negative block filled with -10 (not -inf), logits / tau, cross-entropy with target 0, no reduction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def patch_nce(feat_q: torch.Tensor, feat_k: torch.Tensor, batch_size: int, tau: float = 0.07,
              all_negatives_from_minibatch: bool = False) -> torch.Tensor:
    """Per-patch loss (B*S,) for queries `feat_q` (B*S, C) and keys `feat_k` (B*S, C); keys are detached."""
    n, dim = feat_q.shape
    feat_k = feat_k.detach()
    l_pos = (feat_q * feat_k).sum(dim=1, keepdim=True)
    groups = 1 if all_negatives_from_minibatch else batch_size
    q = feat_q.view(groups, -1, dim)
    k = feat_k.view(groups, -1, dim)
    s = q.size(1)
    l_neg = torch.bmm(q, k.transpose(2, 1))
    diag = torch.eye(s, device=feat_q.device, dtype=torch.bool)[None]
    l_neg = l_neg.masked_fill(diag, -10.0).view(-1, s)
    logits = torch.cat((l_pos, l_neg), dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(n, dtype=torch.long, device=feat_q.device), reduction="none")


def multilayer_patch_nce(feats_q, feats_k, batch_size: int, weight: float = 1.0, tau: float = 0.07,
                         all_negatives_from_minibatch: bool = False) -> torch.Tensor:
    """CUT's calculate_NCE_loss: mean over layers of (weight * mean patch loss)."""
    total = 0.0
    for q, k in zip(feats_q, feats_k):
        total = total + (patch_nce(q, k, batch_size, tau, all_negatives_from_minibatch) * weight).mean()
    return total / len(feats_q)
