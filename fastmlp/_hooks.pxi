# Test and measurement hooks: not used by the production paths.
# Included by _kernels.pyx.

cdef struct StallProbe:
    pthread_t caller
    int64_t caller_ns       # how long a block takes on the caller
    int64_t worker_ns       # ... on a worker (as if descheduled in the middle)
    int on_caller           # blocks the caller ran (written by the caller only)


cdef void stall_probe_block(void* arg, int block) noexcept nogil:
    cdef StallProbe* p = <StallProbe*>arg
    cdef int64_t until
    if pthread_equal(pthread_self(), p.caller):
        p.on_caller += 1
        until = fmp_now_ns() + p.caller_ns
    else:
        until = fmp_now_ns() + p.worker_ns
    while fmp_now_ns() < until:
        pass


def _pool_stall_probe(double caller_s, double worker_s, int n_blocks=2, int threads=2,
                      bint forget=False):
    """Test hook of _pool.h's stall handling: one pool call of ``n_blocks``
    blocks that take ``caller_s`` seconds each on the caller and ``worker_s``
    on a worker.  Past stalls are forgotten first with ``forget``.  Returns
    (blocks the caller ran, seconds the pool then runs alone)."""
    cdef StallProbe p
    p.caller = pthread_self()
    p.caller_ns = <int64_t>(caller_s * 1e9)
    p.worker_ns = <int64_t>(worker_s * 1e9)
    p.on_caller = 0
    with nogil:
        if forget:
            fmp_forget_stalls()
        fmp_run(stall_probe_block, &p, n_blocks, threads)
    return p.on_caller, fmp_solo_left_ns() / 1e9


def _pool_window_probe(double own_s, double wait_s, int calls, bint forget=True):
    """Test hook of _pool.h's slow-worker windows: add ``calls`` pool calls
    of ``own_s`` seconds on the caller's own blocks and ``wait_s`` waiting
    for the workers (past stalls forgotten first with ``forget``), and
    return the seconds the pool then runs alone."""
    cdef int i
    with nogil:
        if forget:
            fmp_forget_stalls()
        for i in range(calls):
            fmp_add_to_window(<int64_t>(own_s * 1e9), <int64_t>(wait_s * 1e9), fmp_now_ns())
    return fmp_solo_left_ns() / 1e9


def _pool_slow_windows(bint enabled):
    """Keep (True) or drop the pool's slow-worker windows (see _pool.h); for
    measurements, not thread-safe."""
    fmp_set_slow_windows(enabled)


def set_safe_fraction(double fraction):
    """Set SAFE_FRACTION (0: every plain-SGD step keeps a backup) and return
    the previous value.  For tests and measurements, not thread-safe."""
    global SAFE_FRACTION
    if not 0 <= fraction <= 1e-2:
        raise ValueError(f"fraction must be in [0, 1e-2]; got {fraction}")
    previous, SAFE_FRACTION = SAFE_FRACTION, fraction
    return previous


def set_blas_bands(Py_ssize_t macs, Py_ssize_t max_bands):
    """Set SPLIT_BLAS_MACS and SPLIT_BLAS_MAX_BLOCKS (see gemm_split) and
    return the previous pair.  Called once at import (_blas_threads: the
    bands are the machine's pool threads) and for measurements; not
    thread-safe."""
    global SPLIT_BLAS_MACS, SPLIT_BLAS_MAX_BLOCKS
    if macs < 1 or not 1 <= max_bands <= 64:
        raise ValueError(f"macs must be >= 1 and max_bands in [1, 64]; got {macs}, {max_bands}")
    previous = (SPLIT_BLAS_MACS, SPLIT_BLAS_MAX_BLOCKS)
    SPLIT_BLAS_MACS, SPLIT_BLAS_MAX_BLOCKS = macs, max_bands
    return previous


def set_forward_pool_rows(Py_ssize_t rows):
    """Set FORWARD_POOL_ROWS (rows of a chunk of forward_chunks; 0: forward
    passes never take that path) and return the previous value.  For tests
    and measurements; not thread-safe."""
    global FORWARD_POOL_ROWS
    if rows < 0:
        raise ValueError(f"rows must be >= 0; got {rows}")
    previous, FORWARD_POOL_ROWS = FORWARD_POOL_ROWS, rows
    return previous


cdef bint toggle_step(int kind, bint enabled):
    """Let the planner take step ``kind`` (or not); returns the previous setting."""
    global HOOK_DISABLED_STEPS
    previous = not (HOOK_DISABLED_STEPS >> kind) & 1
    if enabled:
        HOOK_DISABLED_STEPS &= ~(1 << kind)
    else:
        HOOK_DISABLED_STEPS |= 1 << kind
    return previous


def set_unit_split(bint enabled):
    """Let the planner take the "units" step (or not) and return the previous
    setting.  For measurements and tests, not thread-safe."""
    return toggle_step(STEP_UNITS, enabled)


def unit_parts_of(const Py_ssize_t[::1] sizes, Py_ssize_t m):
    """The hidden-unit parts ``train`` splits a float32 plain-SGD batch of
    m rows into for these layer sizes (1: the step is not split that way)."""
    cdef Spec s = make_spec(sizes, ACT_SIGMOID, OUT_SOFTMAX, LOSS_LOG)
    return unit_parts(&s, m)


def set_first_split(bint enabled):
    """Let the planner take the "first" step (or not) and return the previous
    setting.  For measurements and tests, not thread-safe."""
    return toggle_step(STEP_FIRST, enabled)


def first_split_parts_of(const Py_ssize_t[::1] sizes, Py_ssize_t m, int threads=2):
    """The first-layer parts ``train`` splits a float32 plain-SGD batch of m
    rows into for these layer sizes on ``threads`` of the pool (1: the step
    is not split that way)."""
    cdef Spec s = make_spec(sizes, ACT_SIGMOID, OUT_SOFTMAX, LOSS_LOG)
    return first_split_parts(&s, m, threads)


def set_duel_window(double seconds):
    """Set the duel's shortest window (see duel_step) and return the previous
    one, in seconds; 0 makes windows of DUEL_WINDOW steps.  Forgets the last
    duel's choice.  For tests and measurements, not thread-safe."""
    global DUEL_WINDOW_NS, last_solo_choice_ns
    last_solo_choice_ns = -DUEL_MEMORY_NS
    if not 0 <= seconds <= 60:
        raise ValueError(f"seconds must be in [0, 60]; got {seconds}")
    previous, DUEL_WINDOW_NS = DUEL_WINDOW_NS / 1e9, <int64_t>(seconds * 1e9)
    return previous


def remember_solo_choice(int repeat=DUEL_MAX):
    """Act as if a duel had just chosen one thread for ``repeat`` windows
    (the next fit within DUEL_MEMORY_NS starts on one thread for as long).
    For tests."""
    global last_solo_choice_ns, last_solo_repeat
    if not 1 <= repeat <= DUEL_MAX:
        raise ValueError(f"repeat must be in [1, {DUEL_MAX}]; got {repeat}")
    last_solo_choice_ns = fmp_now_ns()
    last_solo_repeat = repeat


def forget_solo_choice():
    """Forget the last one-thread choice (the next fit duels from its
    first step).  For tests."""
    global last_solo_choice_ns, last_solo_repeat
    last_solo_choice_ns = -DUEL_MEMORY_NS
    last_solo_repeat = DUEL_SOLO_FIRST


def set_duel_quiet_wait(double fraction):
    """Set DUEL_QUIET_WAIT (see duel_step: a pooled window whose caller waited
    less than this fraction of its own time wins without a one-thread window;
    0 always measures one; above 1 also steps shorter than
    DUEL_SKIP_MIN_STEP_NS may skip it) and return the previous value.  Forgets the last
    duel's choice.  For tests and measurements, not thread-safe."""
    global DUEL_QUIET_WAIT, DUEL_SKIP_MIN_STEP_NS, last_solo_choice_ns
    last_solo_choice_ns = -DUEL_MEMORY_NS
    if not 0 <= fraction <= 1e9:
        raise ValueError(f"fraction must be in [0, 1e9]; got {fraction}")
    previous, DUEL_QUIET_WAIT = DUEL_QUIET_WAIT, fraction
    DUEL_SKIP_MIN_STEP_NS = 0 if fraction > 1 else 1e6     # (tests: any step)
    return previous


def set_fused_update(bint on):
    """Let step "layers" fuse the optimizer's update into the gradient
    products (see fused_optimizer_step), or not; returns the previous
    setting.  For tests and measurements, not thread-safe."""
    global FUSED_UPDATE_ON
    previous, FUSED_UPDATE_ON = FUSED_UPDATE_ON, on
    return previous


def set_sparse_max_density(double density):
    """Measurement hook: the densest CSR X that takes step "sparse" (see
    SPARSE_MAX_DENSITY); returns the previous value."""
    global SPARSE_MAX_DENSITY
    old = SPARSE_MAX_DENSITY
    SPARSE_MAX_DENSITY = density
    return old
