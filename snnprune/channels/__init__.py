"""Channel pruning that physically shrinks the network: batch-norm sparsity training, Optimal
Thresholding (per layer) or network slimming (global) cuts, and coupled-channel surgery through
Torch-Pruning's dependency graph, for SpikingJelly SNNs and ANNs alike.

The flow (Ye et al., "Channel Pruning via Optimal Thresholding", ICONIP 2020)::

    bn = BNSparsity(model, l1=1e-4)                 # L1 on BN scales while training
    ...  optimizer.step(); bn.step(optimizer)       # every step
    model, spec = prune_channels(model, example_input, "optimal", delta=1e-3)
    torch.save({"model": model.state_dict(), "channels": spec.to_state()}, path)
    # later: ChannelSpec.from_state(ckpt["channels"]).apply(create_model(...)).load_state_dict(ckpt["model"])
"""

from .bn_sparsity import BNSparsity
from .criteria import channels_to_keep, optimal_threshold, slimming_threshold
from .spec import ChannelSpec
from .surgery import ChannelGroup, batchnorm_gammas, channel_groups, prune_channels, prune_channels_by_mask

__all__ = [
    "BNSparsity", "optimal_threshold", "slimming_threshold", "channels_to_keep", "ChannelSpec",
    "ChannelGroup", "channel_groups", "batchnorm_gammas", "prune_channels", "prune_channels_by_mask",
]
