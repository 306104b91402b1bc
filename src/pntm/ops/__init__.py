"""Pure tensor operations behind P-NTM's layer, each beside the reference it is tested against.

- ``scan``: element-wise linear recurrences (loop, parallel, log-space, chunked), model-free;
  its kernels in ``scan_kernels`` (the loop beside the parallel forms) and ``scan_log``.
- ``fourier_heads``: heads as weightings over all cells, in the Fourier basis: the reference path.
- ``hard_heads``: hard heads as integer cells on the tape: the fast path, with its own backward.
- ``content_addressing``: content heads' weightings over the tape (content, key, context).
- ``write_events``: learned hard write heads as write events (sort, segmented scan, search);
  the event list in ``write_event_list``, the heads' location gradients in ``write_event_grads``.
- ``memory_chunks``: a soft learned writer's memory scan in time chunks, recomputed in backward.
- ``state_maps``: state heads' scans: maps on a few states, soft and valued forms, with loops.

No module here holds parameters; the layers that use them are in ``pntm.models``.
"""
