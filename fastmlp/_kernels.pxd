"""Shared declarations of the compiled core: C headers, codes, the Spec."""
from libc.stdint cimport int64_t, uint64_t

cdef extern from "_vmath.h" nogil:
    void fm_bias_act_d(double* A, const double* b, Py_ssize_t m, Py_ssize_t k, int act,
                       double* S)
    void fm_bias_act_f(float* A, const float* b, Py_ssize_t m, Py_ssize_t k, int act,
                       float* S)
    void fm_times_dact_d(double* D, const double* A, Py_ssize_t n, int act)
    void fm_times_dact_f(float* D, const float* A, Py_ssize_t n, int act)
    void fm_colsum_d(const double* D, Py_ssize_t m, Py_ssize_t k, double* out)
    void fm_colsum_f(const float* D, Py_ssize_t m, Py_ssize_t k, float* out)
    void fm_colsum_ld_f(const float* D, Py_ssize_t m, Py_ssize_t k, Py_ssize_t ld, float* out)
    void fm_small_gemm_d(char ta, char tb, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                         double alpha, const double* A, Py_ssize_t lda, const double* B,
                         Py_ssize_t ldb, double beta, double* C, Py_ssize_t ldc)
    void fm_small_gemm_f(char ta, char tb, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                         float alpha, const float* A, Py_ssize_t lda, const float* B,
                         Py_ssize_t ldb, float beta, float* C, Py_ssize_t ldc)
    double fm_bce_sum_d(const double* z, const double* y, const double* w, Py_ssize_t m, Py_ssize_t k)
    double fm_bce_sum_f(const float* z, const float* y, const float* w, Py_ssize_t m, Py_ssize_t k)
    double fm_poisson_sum_d(const double* z, const double* y, const double* w, Py_ssize_t m,
                            Py_ssize_t k)
    double fm_poisson_sum_f(const float* z, const float* y, const float* w, Py_ssize_t m,
                            Py_ssize_t k)
    double fm_softmax_xent_sum_d(const double* z, const double* p, const double* y,
                                 const double* w, Py_ssize_t m, Py_ssize_t k)
    double fm_softmax_xent_sum_f(const float* z, const float* p, const float* y,
                                 const float* w, Py_ssize_t m, Py_ssize_t k)
    double fm_softmax_xent_delta_f(const float* zp, Py_ssize_t parts, Py_ssize_t zstride,
                                   const float* b, const float* y, const float* w,
                                   Py_ssize_t m, Py_ssize_t k, double inv_M, float* D)
    double fm_exp_d(double x)
    int fm_all_finite_d(const double* x, Py_ssize_t n)
    int fm_all_finite_f(const float* x, Py_ssize_t n)
    double fm_abs_sum_d(const double* x, Py_ssize_t n)
    double fm_abs_sum_f(const float* x, Py_ssize_t n)
    double fm_abs_max_d(const double* x, Py_ssize_t n)
    double fm_abs_max_f(const float* x, Py_ssize_t n)
    float fm_exp_f(float x)
    double fm_tanh_d(double x)
    float fm_tanh_f(float x)

cdef extern from "_gemm.h" nogil:
    void fm_gemm_rb(int is_float, char ta, char tb, Py_ssize_t M, Py_ssize_t N,
                    Py_ssize_t K, double alpha, const void* A, Py_ssize_t lda,
                    const void* B, Py_ssize_t ldb, double beta, void* C, Py_ssize_t ldc,
                    int threads)

cdef extern from "_pool.h" nogil:
    ctypedef void (*fmp_fn)(void* arg, int block) noexcept nogil
    void fmp_run(fmp_fn fn, void* arg, int n_blocks, int threads)
    int64_t fmp_now_ns()
    int64_t fmp_solo_left_ns()
    void fmp_forget_stalls()
    void fmp_set_slow_windows(int on)
    void fmp_add_to_window(int64_t own, int64_t wait, int64_t now)
    void fmp_caller_totals(int64_t* own, int64_t* wait)
    void fmp_set_solo_here(int on)
    int fmp_inside_block()

cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    pthread_t pthread_self()
    int pthread_equal(pthread_t a, pthread_t b)


cdef enum:
    FINITE_BLOCKS = 8


cdef extern from "_fewrows.h" nogil:
    int FMR_MAX_ROWS
    Py_ssize_t fmr_block_width(size_t elsize)
    void fmr_product(int is_float, int M, Py_ssize_t N, Py_ssize_t K, const void* A,
                     Py_ssize_t lda, const void* B, Py_ssize_t ldb, void* C, Py_ssize_t ldc,
                     int threads)

cdef extern from "_narrow.h" nogil:
    int FMN_MAX_LAYERS
    int FMN_MAX_PARTS
    size_t fm_narrow_work_bytes(const Py_ssize_t* sizes, int L)
    int fm_narrow_nv(Py_ssize_t m, size_t elsize)
    Py_ssize_t fm_narrow_chunk(int nv, size_t elsize)
    size_t fm_narrow_prep_bytes(Py_ssize_t n_x, Py_ssize_t n_y, Py_ssize_t m, int nv,
                                size_t elsize)
    void fm_narrow_prepare_d(int nv, Py_ssize_t n_x, Py_ssize_t n_y, const double* X,
                             const double* Y, const double* w, Py_ssize_t m, void* out)
    void fm_narrow_prepare_f(int nv, Py_ssize_t n_x, Py_ssize_t n_y, const float* X,
                             const float* Y, const float* w, Py_ssize_t m, void* out)
    void fm_narrow_init(void* work, const Py_ssize_t* sizes, int L, int nv)
    double fm_narrow_batch_d(void* work, int hidden, int output, int loss,
                             const double* params, const double* X, const double* Y,
                             const double* w, const void* prep, Py_ssize_t m, double inv_M,
                             double* grads, int parts)
    double fm_narrow_batch_f(void* work, int hidden, int output, int loss,
                             const float* params, const float* X, const float* Y,
                             const float* w, const void* prep, Py_ssize_t m, double inv_M,
                             float* grads, int parts)
    Py_ssize_t fm_narrow_sgd_epochs_d(void* work, int hidden, int output, int loss,
                                      double* params, const void* prep, Py_ssize_t m,
                                      double lr, Py_ssize_t epochs, double W_total,
                                      double* epoch_loss, double* grads, double* backup)
    Py_ssize_t fm_narrow_sgd_epochs_f(void* work, int hidden, int output, int loss,
                                      float* params, const void* prep, Py_ssize_t m,
                                      float lr, Py_ssize_t epochs, double W_total,
                                      double* epoch_loss, float* grads, float* backup)
    int fm_sgd_step_d(double* p, const double* g, double* backup, double lr, Py_ssize_t n)
    int fm_sgd_step_f(float* p, const float* g, float* backup, float lr, Py_ssize_t n)


cdef enum:
    ACT_IDENTITY = 0
    ACT_SIGMOID = 1
    ACT_TANH = 2
    ACT_RELU = 3
    ACT_SOFTMAX = 4         # output only
    ACT_LEAKY_RELU = 5
    ACT_GELU = 6            # slope from the pre-activation (Spec.slope_off)
    ACT_SOFTPLUS = 7
    ACT_EXP = 8             # output only

cdef enum:
    OUT_IDENTITY = 0
    OUT_SIGMOID = 1
    OUT_SOFTMAX = 2
    OUT_EXP = 3

cdef enum:
    LOSS_SQUARED = 0
    LOSS_LOG = 1
    LOSS_POISSON = 2        # half Poisson deviance of exp outputs

cdef enum:
    OPT_SGD = 0
    OPT_ADAM = 1
    OPT_RMSPROP = 2
    OPT_ADAMW = 3


cdef struct Spec:
    const Py_ssize_t* sizes   # layer sizes, L + 1 of them
    int L                     # number of weight layers
    int hidden                # hidden activation code
    int output                # output code
    int loss                  # loss code
    Py_ssize_t per_row        # sum of sizes[1:]: activations per row
    Py_ssize_t n_params
    int pool_threads          # threads of fastmlp's pool for the products it computes
    bint blas_one             # BLAS runs on one thread: products whose B a core's cache
                              # holds go to the register blocks (see cached_product)
    Py_ssize_t slope_off      # for gelu: from any hidden activation in the pass's
                              # workspace to its slope f'(z), written beside it by the
                              # forward pass (0: no slopes kept; see hidden_slopes)
    bint dropout              # a training pass drops hidden units (see _dropout.pxi)
    uint64_t drop_threshold   # dropout in a training pass: a hidden unit whose mask hash
                              # (>> 11) is below this is dropped (0: no dropout; _dropout.pxi)
    double drop_scale         # ... the kept units' factor 1 / (1 - p)
    uint64_t drop_key         # ... the fit's key (one draw of the network's generator)
    uint64_t drop_batch       # ... the batch's number in the fit


cdef extern from "_threads.h" nogil:
    void fm_install_blas_threads(void* set_fn, void* get_fn)
    int fm_threads_enter(int want)
    void fm_threads_exit(int entered)
    int fm_threads_pause(int* want)
    void fm_threads_resume(int held, int want)
    int fm_blas_threads_known()
    int fm_blas_single_here()

cdef extern from "_optim.h" nogil:
    Py_ssize_t FMO_BLOCK
    ctypedef struct fmo_task:
        int kind
        int is_float
        void* p
        void* s1
        void* s2
        const void* g
        Py_ssize_t n
        double lr
        double mu
        double b1
        double b2
        double eps
        double scale
        double keep
    double fmo_norm(fmo_task* t, int threads)
    int fmo_step(fmo_task* t, int threads)
    int fmo_step_range(fmo_task* t, Py_ssize_t lo, Py_ssize_t hi)
