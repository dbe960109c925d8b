# A fit's state: its settings, data, plan, workspace and the steps' pool tasks.
# Included by _kernels.pyx (before the steps, which all take a Fit*).

cdef struct Settings:
    int optimizer           # OPT_SGD, OPT_ADAM, OPT_RMSPROP or OPT_ADAMW
    double lr
    double l2
    double l1
    double momentum
    bint nesterov
    double beta1
    double beta2
    double epsilon
    double rho              # RMSprop's mean-square decay
    double weight_decay     # AdamW's decoupled decay
    double clip_norm        # <= 0: no clipping
    void* state             # the optimizer's state (params layout), or NULL
    Py_ssize_t* t           # Adam's (AdamW's) step count, or NULL


cdef struct Data:
    const void* X           # n x n_in, row-major; or a CSR matrix's values (sparse)
    const Py_ssize_t* indices   # sparse: the CSR column indices
    const Py_ssize_t* indptr    # ... and row starts (n_rows + 1)
    bint sparse             # X is CSR: every batch is gathered
    bint scatter            # ... and its rows densified into xbuf (not for step "sparse")
    const void* Y           # n x n_out
    const void* w           # n sample weights, or NULL (unit weights)
    Py_ssize_t n            # the rows trained on: order[0 .. n-1]
    Py_ssize_t n_in
    Py_ssize_t n_out
    Py_ssize_t bs           # rows of a batch (<= n)
    Py_ssize_t* order       # the row order (shuffled in place when shuffling)
    bint shuffle            # a new order each epoch
    bint gather             # batches gathered (shuffled rows, or some rows of X) into
                            # xbuf, ybuf, wbuf
    double W_total          # the total sample weight


cdef struct Batch:
    const void* X           # m x n_in
    const void* Y
    const void* w           # or NULL
    Py_ssize_t start        # its first row in the epoch's order
    Py_ssize_t m
    double M                # its total sample weight


cdef struct Work:
    # allocated by alloc_work and freed by free_work, nothing else
    void* acts              # bs x per_row: every layer's activations (forward_part's layout)
    void* deltas            # ... and their deltas
    void* zout              # bs x n_out output logits (log loss), or NULL
    void* grads             # n_params gradient (steps that do not fuse the update)
    void* backup            # the update guard's copy: n_params (plain SGD), or
                            # parameters and optimizer state (the general update)
    void* scratch           # widest values
    void* xbuf              # a gathered batch
    void* ybuf
    void* wbuf
    void* xalt              # the next gathered batch ("units" gathers one step ahead)
    void* yalt
    void* walt
    double* bounds          # 2 L: sgd_safe's parameter bounds and workspace
    double* part_sums       # MAX_ROW_PARTS x 2 L: row parts' sums for sgd_safe
    double* batch_sums      # 2 L: the batch's (the end of part_sums)
    float* zparts           # "units": partial logits
    float* unit_outs        # "units": each part's outputs, deltas and sums
    float* first_sums       # "first": each part's column sums
    void* nwork             # the narrow steps' workspace
    void* prep              # ... and their prepared chunk blocks
    char* prep_base         # prep, aligned


cdef struct StepBounds:
    # bounds of the general update's guard (see guarded_step)
    double p                # >= every |parameter|
    double s1               # >= every |velocity|, |first moment| or RMSprop's mean square
    double s2               # >= every second moment


cdef struct Duel:
    # the pool against one thread, measured while the fit runs (see duel_step)
    bint active             # the plan puts work on the pool
    int phase               # DUEL_POOLED, DUEL_SOLO (measuring), DUEL_CHOSEN
    Py_ssize_t done         # full steps in the phase (the current one included)
    Py_ssize_t window       # steps the pooled window took
    Py_ssize_t left         # steps the choice holds
    int repeat              # ... in windows (grows while the same side wins)
    bint solo               # the choice
    int64_t t0              # the phase's start
    double pooled_ns        # the pooled window's time a step
    int64_t own0, wait0     # the pool caller's totals when the pooled window began
    Py_ssize_t solo_steps   # steps run on one thread (History.solo_steps)


cdef struct Fit:
    Spec* s
    FitPlan plan
    Settings opt
    Data data
    Work work
    Py_ssize_t widest       # the widest layer
    Py_ssize_t counts[N_STEPS]  # batches each step ran (narrow-epochs: epochs)
    fmo_task opt_task       # the general update's step (_optim.h)
    Duel duel
    uint64_t* drop          # dropout: its key and the fit's batch count (advanced), or NULL
    Py_ssize_t fused_updates    # steps whose optimizer update ran fused (History.fused_updates)
    StepBounds step_bounds
    # the steps' pool tasks (float32), pointing into work
    Spec part_spec          # "rows": a part's products on one thread
    RowTask rows
    UpdateTask upd
    int n_update_blocks
    UnitTask units
    bint pending            # "units": the next batch's forward pass is done
    int upar                # ... and the parity of its partial logits
    FirstSplitTask fst
    Spec rest_spec          # "first": the layers after the first, BLAS on one thread
    RowTask rest_rows


cdef inline StepChoice step_of(Fit* f, Py_ssize_t m) noexcept nogil:
    """The planned step of a batch of m rows."""
    return f.plan.full if m == f.data.bs else f.plan.last
