# The planner: which training step a fit takes, with how many parts and threads.
# Included by _kernels.pyx.
#
# The rule, in one place.  A fit's batches all have bs rows except perhaps the
# last (n % bs rows); each of the two sizes gets one step, chosen once:
#   narrow-epochs  the whole data set is one prepared chunk of the one-pass
#                  step and the update plain SGD without L2: every epoch in C;
#   narrow         every layer at most NARROW_MAX_WIDTH wide and batches of at least
#                  NARROW_MIN_ROWS rows (or only narrow steps allowed): forward,
#                  loss and backward in one feature-major pass;
#   units          float32 plain SGD on one hidden layer whose products stay out
#                  of BLAS: the hidden units split into parts, one hand-off a step;
#   rows           float32, no product of a part goes to BLAS: the batch in parts
#                  of its rows on the pool (plain SGD's update in column blocks);
#   first          float32 plain SGD whose first layer's products go to BLAS and
#                  whose W1 split over the parts fits their cores' caches: that
#                  layer split by its units, each part calling BLAS on one thread;
#   layers         otherwise: per-layer products, BLAS for the big ones.
# A CSR X of at most SPARSE_MAX_DENSITY takes step "sparse" (before all of
# them, for every batch): its first layer's products over the stored values;
# denser ones are densified batch by batch into the steps above.
# The first step (in that order) that the strategy allows and that applies is
# taken.  Dropout allows "layers" alone (its masks are applied there: see
# _dropout.pxi), for every batch.
# "Plain SGD" means no momentum, clipping or L1: its update is fused
# into backpropagation.  A strategy that names steps which do not apply to a
# full batch is an error; the last, shorter batch falls back to "layers".

cdef enum:
    STEP_LAYERS = 0
    STEP_ROWS = 1
    STEP_UNITS = 2
    STEP_FIRST = 3
    STEP_NARROW = 4
    STEP_NARROW_EPOCHS = 5
    STEP_SPARSE = 6
    N_STEPS = 7
    ALL_STEPS = (1 << N_STEPS) - 1
    NARROW_STEPS = (1 << STEP_NARROW) | (1 << STEP_NARROW_EPOCHS)

STEP_NAMES = ("layers", "rows", "units", "first", "narrow", "narrow-epochs", "sparse")

# Steps the test hooks turned off (set_unit_split, set_first_split): taken out
# of every strategy.
cdef int HOOK_DISABLED_STEPS = 0


cdef struct StepChoice:
    int kind                # STEP_*, or -1: no batch of this size
    int parts               # parts of the batch (1: not split)


cdef struct FitPlan:
    StepChoice full         # a batch of bs rows
    StepChoice last         # the last batch, when n % bs > 0
    int allowed             # bit mask of the steps the strategy allows
    bint fused              # plain SGD: the update fused into backpropagation
    bint one_pass           # the narrow steps' workspace
    bint epochs_in_c        # narrow-epochs (when the total sample weight is > 0)
    bint prepared           # the narrow step's chunk blocks prepared once for all epochs
    bint sparse             # step "sparse" (a CSR X of low density): every batch
    bint dropout            # dropout: step "layers" alone
    int nv                  # the narrow step's vector lanes
    Py_ssize_t chunk        # ... and rows a chunk
    int narrow_parts        # ... and parts of a batch on the pool
    int pool_threads        # pool threads of the products fastmlp computes itself
    int step_threads        # pool threads of the split steps (the caller's setting)
    int blas_threads        # BLAS threads for the call (0: the library's setting)


cdef int strategy_mask(object strategy) except -1:
    """The steps a ``strategy`` allows: "auto" (all), one step name, or a
    sequence of step names."""
    cdef int mask = 0
    names = (strategy,) if isinstance(strategy, str) else strategy
    if isinstance(strategy, str) and strategy == "auto":
        return ALL_STEPS
    try:
        names = tuple(names)
    except TypeError:
        names = None
    if not names or not all(isinstance(name, str) and name in STEP_NAMES for name in names):
        raise ValueError(f"strategy must be 'auto', one of {STEP_NAMES} or a sequence of "
                         f"them; got {strategy!r}")
    for name in names:
        mask |= 1 << STEP_NAMES.index(name)
    return mask


cdef inline bint allows(int mask, int kind) noexcept nogil:
    return (mask >> kind) & 1


cdef bint narrow_applies(Spec* s, int allowed) noexcept nogil:
    """Whether the one-pass step runs: allowed, few enough layers, and every
    layer narrow (or only narrow steps allowed: then at any width)."""
    cdef Py_ssize_t l
    if not (allowed & NARROW_STEPS) or s.L > FMN_MAX_LAYERS:
        return False
    if not (allowed & ~NARROW_STEPS):
        return True
    for l in range(s.L + 1):
        if s.sizes[l] > NARROW_MAX_WIDTH:
            return False
    return True


cdef int narrow_parts(Spec* s, Py_ssize_t bs, Py_ssize_t chunk, int threads) noexcept nogil:
    """Parts to split the one-pass step's batches of bs rows into: at most
    ``threads``, one chunk each at least, and NARROW_PART_MACS forward
    multiply-adds each at least (below that, handing work to another
    thread costs more than it saves)."""
    cdef Py_ssize_t l, per_row = 0
    cdef int parts = min(threads, FMN_MAX_PARTS, <int>((bs + chunk - 1) // chunk))
    for l in range(s.L):
        per_row += s.sizes[l] * s.sizes[l + 1]
    while parts > 1 and bs * per_row < parts * NARROW_PART_MACS:
        parts -= 1
    return max(parts, 1)


cdef StepChoice choose_step(Spec* s, FitPlan* p, Py_ssize_t m, bint is_float) noexcept nogil:
    """The step of a batch of m rows (see the rule above); kind -1 when the
    strategy allows none that applies."""
    cdef StepChoice c
    c.parts = 1
    if p.sparse:
        c.kind = STEP_SPARSE
        return c
    if p.one_pass:
        c.kind = STEP_NARROW
        c.parts = p.narrow_parts
        return c
    if is_float and p.fused and allows(p.allowed, STEP_UNITS):
        c.parts = unit_parts(s, m)
        if c.parts > 1:
            c.kind = STEP_UNITS
            return c
    if is_float and allows(p.allowed, STEP_ROWS):
        c.parts = row_parts(s, m, True)
        if c.parts > 1:
            c.kind = STEP_ROWS
            return c
    if (is_float and p.fused and allows(p.allowed, STEP_FIRST)
            and fm_blas_threads_known()):
        # (with a BLAS whose thread count fastmlp cannot set, the parts'
        # calls would each start that BLAS's threads)
        c.parts = first_split_parts(s, m, p.step_threads)
        if c.parts > 1:
            c.kind = STEP_FIRST
            return c
    c.parts = 1
    c.kind = STEP_LAYERS if allows(p.allowed, STEP_LAYERS) else -1
    return c


cdef FitPlan plan_fit(Spec* s, Py_ssize_t n, Py_ssize_t bs, bint is_float, bint fused,
                      bint gather, double l2, int allowed, int blas_threads,
                      int pool_threads, double density, bint dropout) noexcept nogil:
    """The plan of a fit of n rows in batches of bs (<= n) rows; ``density``:
    a CSR X's stored values / (rows x columns), or -1 for a dense X;
    ``dropout``: the fit drops hidden units (step "layers" alone)."""
    cdef FitPlan p
    cdef size_t elsize = sizeof(float) if is_float else sizeof(double)
    cdef Py_ssize_t l
    p.allowed = allowed & ~HOOK_DISABLED_STEPS
    p.dropout = dropout
    if dropout:
        p.allowed &= 1 << STEP_LAYERS
    p.fused = fused
    p.step_threads = pool_threads
    p.pool_threads = pool_threads
    for l in range(s.L):
        if blas_threads != 1 and bs * s.sizes[l] * s.sizes[l + 1] > BLOCKED_MAX_PRODUCT:
            # the step has products BLAS threads itself: the pool's threads,
            # spinning after each small product, would take its cores
            p.pool_threads = 1
    p.one_pass = narrow_applies(s, p.allowed)
    p.nv = fm_narrow_nv(bs, elsize)
    p.chunk = fm_narrow_chunk(p.nv, elsize)
    p.narrow_parts = narrow_parts(s, bs, p.chunk, pool_threads) if p.one_pass else 1
    # unshuffled batches that start on chunk boundaries: their chunk blocks
    # are prepared once for every epoch (when that copy is not too big)
    p.prepared = (p.one_pass and not gather and (bs >= n or bs % p.chunk == 0)
                  and fm_narrow_prep_bytes(s.sizes[0], s.sizes[s.L], n, p.nv, elsize)
                  <= PREPARED_BYTES)
    p.epochs_in_c = (p.prepared and fused and n <= p.chunk and l2 == 0
                     and allows(p.allowed, STEP_NARROW_EPOCHS))
    if p.one_pass and not allows(p.allowed, STEP_NARROW):
        p.one_pass = p.epochs_in_c      # only narrow-epochs allowed
    if (p.one_pass and not p.epochs_in_c and bs < NARROW_MIN_ROWS
            and (p.allowed & ~NARROW_STEPS)):
        # a few rows fill few of the one-pass step's lanes: "layers" is faster
        p.one_pass = False
        p.prepared = False
    p.sparse = (density >= 0 and density <= SPARSE_MAX_DENSITY
                and allows(p.allowed, STEP_SPARSE))
    if p.sparse:
        p.one_pass = p.prepared = p.epochs_in_c = False
    p.full = choose_step(s, &p, bs, is_float)
    p.last.kind = -1
    p.last.parts = 0
    if n % bs:
        p.last = choose_step(s, &p, n % bs, is_float)
        if p.last.kind < 0:
            p.last.kind = STEP_LAYERS
            p.last.parts = 1
    # the first-layer split's parts call BLAS on one thread each
    p.blas_threads = (1 if p.full.kind == STEP_FIRST or p.last.kind == STEP_FIRST
                      else blas_threads)
    return p


cdef str plan_error(FitPlan* p, object strategy):
    """Why the strategy cannot run the fit, or None when it can."""
    if p.full.kind >= 0 or p.epochs_in_c:
        return None
    if p.dropout:
        return (f"strategy {strategy!r} cannot run a fit with dropout: its masks are "
                f"applied in step 'layers' only (use strategy 'auto' or 'layers')")
    return (f"strategy {strategy!r} cannot run this fit: none of its steps applies to a "
            f"batch of this network, dtype and optimizer (see fastmlp.Network.plan)")
