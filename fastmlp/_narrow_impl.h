/* One batch of a narrow network, forward + loss + backward, in one pass over
 * feature-major chunks.  A template: each unit _narrow_<SUF><NV>.c includes
 * it once, through _narrow.h, for one (element type, vectors per chunk row)
 * with these macros defined:
 *
 *   FMN_T    element type (float or double)
 *   FMN_SUF  name suffix (f or d)
 *   FMN_NV   vectors per chunk row: a chunk is FMN_NV * VL samples, VL the
 *            number of FMN_T in one 32-byte vector
 *   FMN_EXP  the element type's exp
 *
 * Layout: a chunk holds C samples; each layer's values for the chunk are a
 * (units x C) block, sample index contiguous, so every product is a sum of
 * broadcast weight times vector, and every element-wise pass runs over whole
 * vectors whatever the layer widths.  Weight gradients are accumulated as
 * vectors (one per parameter) and folded once per batch.
 */

#define FMN_CAT2(a, b) a##b
#define FMN_CAT(a, b) FMN_CAT2(a, b)
#define FMN_NAME(base) FMN_CAT(FMN_CAT(base, FMN_SUF), FMN_NV)
#define FMN_V FMN_CAT(fmn_vec_, FMN_SUF)
#define FMN_VL ((fm_idx)(32 / sizeof(FMN_T)))
#define FMN_C (FMN_NV * FMN_VL)

#ifndef FMN_ROWS
/* for each value index j of `rows` chunk rows; the inner loop has a
 * constant count (C), so it compiles to whole vectors, no remainder code */
#define FMN_ROWS(j, rows)                                                       \
    for (fm_idx fmn_r_ = 0; fmn_r_ < (rows); fmn_r_++)                         \
        for (fm_idx fmn_n_ = 0, j = fmn_r_ * FMN_C; fmn_n_ < FMN_C; fmn_n_++, j++)
#endif

/* Forward through one layer: out = b + W^T in (units x C blocks), two output
 * units at a time (for NV <= 4) so that 2 * NV independent sums are in
 * flight. */
FM_INLINE void FMN_NAME(fmn_layer_body_)(const FMN_T *restrict W, const FMN_T *restrict b,
                                    const FMN_V *restrict in, FMN_V *restrict out,
                                    fm_idx n_in, fm_idx n_out)
{
    fm_idx i = 0, k, v;
    /* pairs while 2 * NV sums fit in the 16 vector registers with room */
    for (; FMN_NV <= 4 && i + 1 < n_out; i += 2) {
        FMN_V a0[FMN_NV], a1[FMN_NV];
        for (v = 0; v < FMN_NV; v++) {
            a0[v] = (FMN_V){0} + b[i];
            a1[v] = (FMN_V){0} + b[i + 1];
        }
        for (k = 0; k < n_in; k++) {
            FMN_V w0 = (FMN_V){0} + W[k * n_out + i];
            FMN_V w1 = (FMN_V){0} + W[k * n_out + i + 1];
            const FMN_V *restrict x = in + k * FMN_NV;
            for (v = 0; v < FMN_NV; v++) {
                a0[v] += w0 * x[v];
                a1[v] += w1 * x[v];
            }
        }
        for (v = 0; v < FMN_NV; v++) {
            out[i * FMN_NV + v] = a0[v];
            out[(i + 1) * FMN_NV + v] = a1[v];
        }
    }
    for (; i < n_out; i++) {
        FMN_V a0[FMN_NV];
        for (v = 0; v < FMN_NV; v++)
            a0[v] = (FMN_V){0} + b[i];
        for (k = 0; k < n_in; k++) {
            FMN_V w0 = (FMN_V){0} + W[k * n_out + i];
            const FMN_V *restrict x = in + k * FMN_NV;
            for (v = 0; v < FMN_NV; v++)
                a0[v] += w0 * x[v];
        }
        for (v = 0; v < FMN_NV; v++)
            out[i * FMN_NV + v] = a0[v];
    }
}

/* Back through one layer: prev = (W D) * f'(A_prev), two input units at a
 * time (W's rows are contiguous over the output units); for gelu A holds
 * the slopes f'(z) themselves. */
FM_INLINE void FMN_NAME(fmn_back_body_)(const FMN_T *restrict W, const FMN_V *restrict D,
                                   const FMN_V *restrict A, FMN_V *restrict prev,
                                   fm_idx n_in, fm_idx n_out, int act)
{
    fm_idx i, k, v;
    for (k = 0; k < n_in; k++) {
        FMN_V s[FMN_NV];
        const FMN_T *restrict wrow = W + k * n_out;
        for (v = 0; v < FMN_NV; v++)
            s[v] = (FMN_V){0};
        for (i = 0; i < n_out; i++) {
            FMN_V wi = (FMN_V){0} + wrow[i];
            for (v = 0; v < FMN_NV; v++)
                s[v] += wi * D[i * FMN_NV + v];
        }
        for (v = 0; v < FMN_NV; v++)
            prev[k * FMN_NV + v] = s[v];
    }
    {
        FMN_T *restrict p = (FMN_T *)prev;
        const FMN_T *restrict a = (const FMN_T *)A;
        if (act == 1) {
            FMN_ROWS(j, n_in) p[j] *= a[j] * ((FMN_T)1 - a[j]);
        } else if (act == 2) {
            FMN_ROWS(j, n_in) p[j] *= (FMN_T)1 - a[j] * a[j];
        } else if (act == 3) {
            FMN_ROWS(j, n_in) p[j] = a[j] > 0 ? p[j] : (FMN_T)0;
        } else if (act == 5) {
            FMN_ROWS(j, n_in) p[j] *= a[j] > 0 ? (FMN_T)1 : (FMN_T)FM_LEAKY_SLOPE;
        } else if (act == 6) {      /* A: gelu's slopes (fmn_chunks_) */
            FMN_ROWS(j, n_in) p[j] *= a[j];
        } else if (act == 7) {
            FMN_ROWS(j, n_in) p[j] *= FMN_CAT(fm_softplus_slope_, FMN_SUF)(a[j]);
        }
    }
}

/* Lane-wise a . d over a chunk row: two partial sums, half the latency. */
FM_INLINE FMN_V FMN_NAME(fmn_dot_)(const FMN_V *restrict a, const FMN_V *restrict d)
{
    FMN_V s0 = a[0] * d[0], s1 = (FMN_V){0};
    fm_idx v;
    for (v = 1; v + 1 < FMN_NV; v += 2) {
        s1 += a[v] * d[v];
        s0 += a[v + 1] * d[v + 1];
    }
    if (FMN_NV % 2 == 0)
        s1 += a[FMN_NV - 1] * d[FMN_NV - 1];
    return s0 + s1;
}

/* Gradient of one layer from one chunk: G[k * n_out + i] += A[k] . D[i]
 * and GB[i] += sum(D[i]).  Lane-wise into vector accumulators (G, GB not
 * NULL; folded at the end of the batch), or, for a batch of one chunk,
 * summed across lanes straight into the gradient (g, gb). */
FM_INLINE void FMN_NAME(fmn_grad_body_)(const FMN_V *restrict A, const FMN_V *restrict D,
                                   FMN_V *restrict G, FMN_V *restrict GB,
                                   FMN_T *restrict g, FMN_T *restrict gb,
                                   fm_idx n_in, fm_idx n_out)
{
    fm_idx i, k, v;
    for (k = 0; k < n_in; k++) {
        FMN_V a[FMN_NV];
        for (v = 0; v < FMN_NV; v++)
            a[v] = A[k * FMN_NV + v];
        if (G) {
            for (i = 0; i < n_out; i++)
                G[k * n_out + i] += FMN_NAME(fmn_dot_)(a, D + i * FMN_NV);
        } else {
            for (i = 0; i < n_out; i++)
                g[k * n_out + i] = FMN_HSUM(FMN_NAME(fmn_dot_)(a, D + i * FMN_NV));
        }
    }
    for (i = 0; i < n_out; i++) {
        FMN_V s = D[i * FMN_NV];
        for (v = 1; v < FMN_NV; v++)
            s += D[i * FMN_NV + v];
        if (GB)
            GB[i] += s;
        else
            gb[i] = FMN_HSUM(s);
    }
}

/* The three per-layer passes with the narrowest widths as constants (so
 * their loops unroll: for XOR-sized layers the loop overhead is most of the
 * work), any other width as it comes. */
#ifndef FMN_SMALL_WIDTHS
#define FMN_SMALL_WIDTHS(n, CALL)                                               \
    switch (n) {                                                                \
    case 1: CALL(1); break;                                                     \
    case 2: CALL(2); break;                                                     \
    case 3: CALL(3); break;                                                     \
    case 4: CALL(4); break;                                                     \
    default: CALL(n); break;                                                    \
    }
#endif

FM_INLINE void FMN_NAME(fmn_layer_)(const FMN_T *restrict W, const FMN_T *restrict b,
                                    const FMN_V *restrict in, FMN_V *restrict out,
                                    fm_idx n_in, fm_idx n_out)
{
#define FMN_CALL(w) FMN_NAME(fmn_layer_body_)(W, b, in, out, n_in, w)
    FMN_SMALL_WIDTHS(n_out, FMN_CALL)
#undef FMN_CALL
}

FM_INLINE void FMN_NAME(fmn_back_)(const FMN_T *restrict W, const FMN_V *restrict D,
                                   const FMN_V *restrict A, FMN_V *restrict prev,
                                   fm_idx n_in, fm_idx n_out, int act)
{
#define FMN_CALL(w) FMN_NAME(fmn_back_body_)(W, D, A, prev, n_in, w, act)
    FMN_SMALL_WIDTHS(n_out, FMN_CALL)
#undef FMN_CALL
}

FM_INLINE void FMN_NAME(fmn_grad_)(const FMN_V *restrict A, const FMN_V *restrict D,
                                   FMN_V *restrict G, FMN_V *restrict GB,
                                   FMN_T *restrict g, FMN_T *restrict gb,
                                   fm_idx n_in, fm_idx n_out)
{
#define FMN_CALL(w) FMN_NAME(fmn_grad_body_)(A, D, G, GB, g, gb, n_in, w)
    FMN_SMALL_WIDTHS(n_out, FMN_CALL)
#undef FMN_CALL
}


/* Chunk blocks of a batch, prepared: per chunk of C samples, the inputs
 * (n_x rows of C), the targets (n_y rows) and the sample weights (1 row),
 * transposed, with empty lanes 0.  Data that serves several epochs
 * unshuffled is prepared once (fm_narrow_prepare), else batch by batch. */
FM_INLINE void FMN_NAME(fmn_prepare_)(fm_idx n_x, fm_idx n_y, const FMN_T *restrict X,
                                      const FMN_T *restrict Y, const FMN_T *restrict w,
                                      fm_idx m, FMN_T *restrict out)
{
    const fm_idx C = FMN_C, rows = n_x + n_y + 1;
    fm_idx c0, n, k;
    for (c0 = 0; c0 < m; c0 += C) {
        fm_idx cn = m - c0 < C ? m - c0 : C;
        FMN_T *restrict blk = out + (c0 / C) * rows * C;
        for (n = 0; n < cn; n++) {
            for (k = 0; k < n_x; k++)
                blk[k * C + n] = X[(c0 + n) * n_x + k];
            for (k = 0; k < n_y; k++)
                blk[(n_x + k) * C + n] = Y[(c0 + n) * n_y + k];
            blk[(n_x + n_y) * C + n] = w ? w[c0 + n] : (FMN_T)1;
        }
        for (k = 0; k < rows; k++)
            for (n = cn; n < C; n++)
                blk[k * C + n] = 0;
    }
}

FM_CLONES FMP_API void FMN_NAME(fm_narrow_prepare_)(fm_idx n_x, fm_idx n_y,
                                                   const FMN_T *restrict X,
                                                   const FMN_T *restrict Y,
                                                   const FMN_T *restrict w, fm_idx m,
                                                   void *out)
{
    FMN_NAME(fmn_prepare_)(n_x, n_y, X, Y, w, m, (FMN_T *)FMN_ALIGN(out));
}

/* Chunks of a batch, samples c_begin..c_end-1 (c_begin on a chunk
 * boundary), in the workspace part at `area` (plan: the layout, in part
 * 0).  Returns their weighted data-loss sum.  The gradient goes straight
 * into grads for a batch of one chunk, else it is added to the part's lane
 * accumulators (gvec), which start at zero here. */
FM_INLINE double FMN_NAME(fmn_chunks_)(
    void *area, const fmn_plan *plan, int hidden, int output, int loss,
    const FMN_T *restrict params, const FMN_T *restrict X, const FMN_T *restrict Y,
    const FMN_T *restrict w, const void *prep, fm_idx c_begin, fm_idx c_end, int one_chunk,
    double inv_M, FMN_T *restrict grads)
{
    const fm_idx C = FMN_C, L = plan->L, P = plan->P;
    const fm_idx *sizes = plan->sizes, *off = plan->off;
    const fm_idx n_x = sizes[0], n_y = sizes[L], rows = n_x + n_y + 1;
    fm_idx l, j, n, c0, cn;
    double total = 0;
    FMN_V *base = (FMN_V *)FMN_ALIGN((char *)area + sizeof(fmn_plan));
    FMN_V *acts[FMN_MAX_LAYERS + 1];
    FMN_V *zout = base + plan->zout * FMN_NV, *d0 = base + plan->d0 * FMN_NV;
    FMN_V *d1 = base + plan->d1 * FMN_NV, *blocks = base + plan->blocks * FMN_NV;
    FMN_V *gvec = base + plan->gvec * FMN_NV;
    FMN_T wlane[FMN_C], live[FMN_C];

    for (l = 1; l <= L; l++)
        acts[l] = base + plan->acts[l] * FMN_NV;
    if (!one_chunk)
        memset(gvec, 0, (size_t)P * sizeof(FMN_V));

    for (c0 = c_begin; c0 < c_end; c0 += C) {
        const FMN_T *restrict yt, *restrict craw;
        cn = c_end - c0 < C ? c_end - c0 : C;
        if (prep) {
            acts[0] = (FMN_V *)FMN_ALIGN(prep) + (c0 / C) * rows * FMN_NV;
        } else {
            FMN_NAME(fmn_prepare_)(n_x, n_y, X + c0 * n_x, Y + c0 * n_y, w ? w + c0 : NULL,
                                   cn, (FMN_T *)blocks);
            acts[0] = blocks;
        }
        yt = (const FMN_T *)(acts[0] + n_x * FMN_NV);
        craw = yt + n_y * C;
        for (n = 0; n < C; n++) {
            wlane[n] = (FMN_T)((double)craw[n] * inv_M);
            live[n] = n < cn;
        }
        /* forward */
        for (l = 0; l < L; l++) {
            const FMN_T *W = params + off[l];
            fm_idx n_in = sizes[l], n_out = sizes[l + 1];
            FMN_T *restrict a;
            FMN_V *dst = l == L - 1 ? zout : acts[l + 1];
            FMN_NAME(fmn_layer_)(W, W + n_in * n_out, acts[l], dst, n_in, n_out);
            if (l < L - 1) {
                a = (FMN_T *)acts[l + 1];
                FMN_CAT(fm_act_flat_, FMN_SUF)(a, a + plan->slope * C, n_out * C,
                                               hidden);                 /* _vmath.h */
                if (cn < C)     /* keep empty lanes at 0 all the way through */
                    FMN_ROWS(j, n_out) a[j] = live[fmn_n_] != 0 ? a[j] : (FMN_T)0;
            }
        }
        /* output activation, loss and output delta */
        {
            const FMN_T *restrict z = (const FMN_T *)zout;
            FMN_T *restrict p = (FMN_T *)acts[L];
            FMN_T *restrict d = (FMN_T *)d0;
            double lane_loss[FMN_C];
            if (output == 2) {
                FMN_T mx[FMN_C], s[FMN_C];
                for (n = 0; n < C; n++) { mx[n] = z[n]; s[n] = 0; }
                for (j = 1; j < n_y; j++)
                    for (n = 0; n < C; n++) mx[n] = z[j * C + n] > mx[n] ? z[j * C + n] : mx[n];
                for (j = 0; j < n_y; j++)
                    for (n = 0; n < C; n++) {
                        p[j * C + n] = FMN_EXP(z[j * C + n] - mx[n]);
                        s[n] += p[j * C + n];
                    }
                for (n = 0; n < C; n++) s[n] = (FMN_T)1 / s[n];
                for (j = 0; j < n_y; j++)
                    for (n = 0; n < C; n++) p[j * C + n] *= s[n];
            } else if (output == 1) {
                FMN_ROWS(j, n_y) p[j] = (FMN_T)1 / ((FMN_T)1 + FMN_EXP(-z[j]));
            } else if (output == 3) {
                FMN_ROWS(j, n_y) p[j] = FMN_CAT(fm_exp_out_, FMN_SUF)(z[j]);
            } else {
                memcpy(p, z, (size_t)(n_y * C) * sizeof(FMN_T));
            }
            for (n = 0; n < C; n++) lane_loss[n] = 0;
            if (loss == 0) {
                for (j = 0; j < n_y; j++)
                    for (n = 0; n < C; n++) {
                        double e = (double)yt[j * C + n] - (double)p[j * C + n];
                        lane_loss[n] += 0.5 * e * e;
                    }
            } else if (loss == 2) {     /* half Poisson deviance */
                for (j = 0; j < n_y; j++)
                    for (n = 0; n < C; n++)
                        lane_loss[n] += fm_poisson_elem(z[j * C + n], yt[j * C + n]);
            } else if (output == 1) {
                for (j = 0; j < n_y; j++)
                    for (n = 0; n < C; n++)
                        lane_loss[n] += fm_bce_elem(z[j * C + n], yt[j * C + n]);
            } else {
                for (n = 0; n < cn; n++) {
                    double mxd = z[n], se = 0, lse;
                    for (j = 1; j < n_y; j++)
                        mxd = z[j * C + n] > mxd ? z[j * C + n] : mxd;
                    for (j = 0; j < n_y; j++)
                        se += fm_exp_d((double)z[j * C + n] - mxd);
                    lse = mxd + log(se);
                    for (j = 0; j < n_y; j++)
                        lane_loss[n] += (double)yt[j * C + n] * (lse - z[j * C + n]);
                }
            }
            for (n = 0; n < cn; n++)
                total += (double)craw[n] * lane_loss[n];
            /* dObjective/dZ of the output layer, w_i / M included */
            if (loss == 1 && output == 2) {
                FMN_T t[FMN_C];
                for (n = 0; n < C; n++) t[n] = 0;
                for (j = 0; j < n_y; j++)
                    for (n = 0; n < C; n++) t[n] += yt[j * C + n];
                for (j = 0; j < n_y; j++)
                    for (n = 0; n < C; n++)
                        d[j * C + n] = (t[n] * p[j * C + n] - yt[j * C + n]) * wlane[n];
            } else if (loss != 0 || output == 0) {     /* the canonical links: p - y */
                for (j = 0; j < n_y; j++)
                    for (n = 0; n < C; n++)
                        d[j * C + n] = (p[j * C + n] - yt[j * C + n]) * wlane[n];
            } else if (output == 1) {
                for (j = 0; j < n_y; j++)
                    for (n = 0; n < C; n++) {
                        FMN_T q = p[j * C + n];
                        d[j * C + n] = (q - yt[j * C + n]) * (q * (1 - q)) * wlane[n];
                    }
            } else {
                FMN_T t[FMN_C];
                for (n = 0; n < C; n++) t[n] = 0;
                for (j = 0; j < n_y; j++)
                    for (n = 0; n < C; n++)
                        t[n] += (p[j * C + n] - yt[j * C + n]) * p[j * C + n];
                for (j = 0; j < n_y; j++)
                    for (n = 0; n < C; n++) {
                        FMN_T q = p[j * C + n];
                        d[j * C + n] = q * ((q - yt[j * C + n]) - t[n]) * wlane[n];
                    }
            }
            if (cn < C)     /* empty lanes carry nothing back, whatever they hold */
                FMN_ROWS(j, n_y) d[j] = live[fmn_n_] != 0 ? d[j] : (FMN_T)0;
        }
        /* backward */
        {
            FMN_V *dcur = d0, *dprev = d1, *tmp;
            for (l = L - 1; l >= 0; l--) {
                fm_idx n_in = sizes[l], n_out = sizes[l + 1];
                const FMN_T *W = params + off[l];
                if (one_chunk)
                    FMN_NAME(fmn_grad_)(acts[l], dcur, NULL, NULL, grads + off[l],
                                        grads + off[l] + n_in * n_out, n_in, n_out);
                else
                    FMN_NAME(fmn_grad_)(acts[l], dcur, gvec + off[l],
                                        gvec + off[l] + n_in * n_out, NULL, NULL, n_in, n_out);
                if (l > 0) {
                    const FMN_V *src = hidden == 6 ? acts[l] + plan->slope * FMN_NV : acts[l];
                    FMN_NAME(fmn_back_)(W, dcur, src, dprev, n_in, n_out, hidden);
                    tmp = dcur; dcur = dprev; dprev = tmp;
                }
            }
        }
    }
    return total;
}

/* A batch split over threads: part b takes chunks nc*b/parts ..
 * nc*(b+1)/parts - 1 in workspace part b. */
typedef struct {
    void *work;
    int hidden, output, loss, parts;
    const FMN_T *params, *X, *Y, *w;
    const void *prep;
    fm_idx m, nc;
    double inv_M;
    double totals[FMN_MAX_PARTS];
} FMN_NAME(fmn_split_);

FM_CLONES static void FMN_NAME(fmn_part_)(void *arg, int b)
{
    FMN_NAME(fmn_split_) *t = (FMN_NAME(fmn_split_) *)arg;
    const fmn_plan *plan = (const fmn_plan *)t->work;
    fm_idx lo = t->nc * b / t->parts * FMN_C, hi = t->nc * (b + 1) / t->parts * FMN_C;
    t->totals[b] = FMN_NAME(fmn_chunks_)((char *)t->work + b * plan->part_bytes, plan,
                                         t->hidden, t->output, t->loss, t->params, t->X,
                                         t->Y, t->w, t->prep, lo, hi < t->m ? hi : t->m, 0,
                                         t->inv_M, NULL);
}

/* The batch: returns the weighted sum of the per-sample data losses (not
 * divided by M) and writes into grads the data part of the objective's
 * gradient, sum_i (w_i / M) dloss_i / dparams (inv_M = 1 / M; w NULL means
 * unit weights).  The batch's rows come from X, Y, w, or, when prep is not
 * NULL, from its prepared chunk blocks (at prep, aligned as by
 * fm_narrow_prepare).  work: as set up by fm_narrow_init, with `parts`
 * parts (at most FMN_MAX_PARTS): a batch of several chunks is split into
 * that many parts, run on as many threads of _pool.h, their lane
 * accumulators added in part order (so the result depends on parts, not on
 * which thread ran what). */
FM_CLONES FMP_API double FMN_NAME(fm_narrow_batch_)(
    void *work, int hidden, int output, int loss,
    const FMN_T *restrict params, const FMN_T *restrict X, const FMN_T *restrict Y,
    const FMN_T *restrict w, const void *prep, fm_idx m, double inv_M,
    FMN_T *restrict grads, int parts)
{
    const fmn_plan *plan = (const fmn_plan *)work;
    const fm_idx P = plan->P, nc = (m + FMN_C - 1) / FMN_C;
    fm_idx k;
    int b;
    double total;
    FMN_V *gvec0 = (FMN_V *)FMN_ALIGN((char *)work + sizeof(fmn_plan)) + plan->gvec * FMN_NV;
    parts = parts > nc ? (int)nc : parts;
    if (parts <= 1) {   /* one call site: the chunk loop is inlined once here */
        total = FMN_NAME(fmn_chunks_)(work, plan, hidden, output, loss, params, X, Y, w, prep,
                                      0, m, nc <= 1, inv_M, nc <= 1 ? grads : NULL);
        if (nc > 1)
            for (k = 0; k < P; k++)     /* fold the lane accumulators */
                grads[k] = FMN_HSUM(gvec0[k]);
        return total;
    }
    {
        FMN_NAME(fmn_split_) t = {work, hidden, output, loss, parts, params, X, Y, w, prep,
                                  m, nc, inv_M, {0}};
        const fm_idx stride = plan->part_bytes / (fm_idx)sizeof(FMN_V);
        fmp_run(FMN_NAME(fmn_part_), &t, parts, parts);
        for (k = 0; k < P; k++) {
            FMN_V g = gvec0[k];
            for (b = 1; b < parts; b++)
                g += gvec0[b * stride + k];
            grads[k] = FMN_HSUM(g);
        }
        total = t.totals[0];
        for (b = 1; b < parts; b++)
            total += t.totals[b];
        return total;
    }
}

/* `epochs` epochs of plain SGD on one batch of prepared chunk blocks (the
 * whole data set, unshuffled, total sample weight W_total): per epoch the
 * batch as fm_narrow_batch, then train's checked step (fmn_sgd_step).
 * epoch_loss[e] gets the objective sum / W_total.  Returns the epochs
 * completed; stops early, as train's own loop does, at a non-finite
 * objective (its entry is that value) or at a step that would make a
 * parameter non-finite (params left as they were, entry +inf).  For tiny
 * data sets (XOR) the per-epoch overhead of a call is most of the time.
 * grads, backup: P values of scratch each. */
FM_CLONES FMP_API fm_idx FMN_NAME(fm_narrow_sgd_epochs_)(
    void *work, int hidden, int output, int loss, FMN_T *restrict params,
    const void *prep, fm_idx m, FMN_T lr, fm_idx epochs, double W_total,
    double *restrict epoch_loss, FMN_T *restrict grads, FMN_T *restrict backup)
{
    const fm_idx P = ((const fmn_plan *)work)->P;
    fm_idx e;
    for (e = 0; e < epochs; e++) {
        double obj = FMN_NAME(fmn_chunks_)(work, (const fmn_plan *)work, hidden, output,
                                           loss, params, NULL, NULL, NULL, prep, 0, m, 1,
                                           1.0 / W_total, grads);
        if (!isfinite(obj)) {
            epoch_loss[e] = obj;
            return e;
        }
        if (!FMN_CAT(fmn_sgd_step_, FMN_SUF)(params, grads, backup, lr, P)) {
            epoch_loss[e] = INFINITY;
            return e;
        }
        epoch_loss[e] = obj / W_total;
    }
    return epochs;
}

#undef FMN_NAME
#undef FMN_C
