//! Inference kernels for f32 tensors on the CPU, where candle's composition of small ops
//! costs more than the arithmetic: group norm (+ SiLU) in one pass per group, attention
//! that reads the heads in place and never holds more than a tile of the score matrix,
//! GEGLU in one pass, and dense products whose output starts from the bias (no separate
//! add). Everything runs on rayon's pool — the one gemm already uses, sized by `--threads`
//! — so no second set of threads competes for the cores.
//!
//! None of these has a backward pass: callers take them only when [`applies`] says no
//! input tracks gradients (the student in distillation keeps candle's ops).

use candle_core::{bail, DType, Device, Result, Tensor};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::vecmath;

/// Whether the kernels here may replace candle's ops for these tensors: f32 on the CPU,
/// none of them tracking gradients.
pub fn applies(ts: &[&Tensor]) -> bool {
    ts.iter()
        .all(|t| matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32 && !t.track_op())
}

/// Runs `f` on the f32 data of a contiguous CPU tensor, borrowed (no copy).
pub(crate) fn with_data<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        bail!("kernels: tensor is not on the CPU")
    };
    let data = cpu.as_slice::<f32>()?;
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("kernels: tensor is not contiguous")
    };
    Ok(f(&data[start..end]))
}

/// A (small) tensor's values, copied out.
pub(crate) fn values(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// The threads gemm may use for one large product.
fn parallelism() -> Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

/// A pointer handed to the tasks of one parallel loop, each writing its own disjoint part.
#[derive(Clone, Copy)]
pub(crate) struct Out(*mut f32);
// SAFETY: every task writes a region no other task touches, and the buffer outlives the loop.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}
impl Out {
    pub(crate) fn new(buffer: &mut [f32]) -> Out {
        Out(buffer.as_mut_ptr())
    }

    /// # Safety
    /// `offset` stays inside the buffer the pointer came from.
    pub(crate) unsafe fn at(self, offset: usize) -> *mut f32 {
        self.0.add(offset)
    }
}

/// diffusers' GroupNorm over (b, c, …) with per-channel scale and shift, then SiLU when
/// `silu`: reads for the statistics (f32 lanes, blocks added in f64) and one fused write,
/// per (image, group).
pub fn group_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    groups: usize,
    eps: f64,
    silu: bool,
) -> Result<Tensor> {
    let x = x.contiguous()?;
    let dims = x.dims().to_vec();
    if dims.len() < 2 {
        bail!("group_norm: input of shape {dims:?} has no channel dimension");
    }
    let (b, c) = (dims[0], dims[1]);
    if groups == 0 || c % groups != 0 {
        bail!("group_norm: {c} channels do not split into {groups} groups");
    }
    let (w, s) = (values(weight)?, values(bias)?);
    if w.len() != c || s.len() != c {
        bail!(
            "group_norm: {c} channels but {} weights and {} biases",
            w.len(),
            s.len()
        );
    }
    let spatial: usize = dims[2..].iter().product();
    let cg = c / groups;
    let len = cg * spatial;
    let mut out = vec![0f32; b * c * spatial];
    if len > 0 {
        with_data(&x, |src| {
            out.par_chunks_mut(len)
                .zip(src.par_chunks(len))
                .enumerate()
                .for_each(|(job, (dst, src))| {
                    let g = job % groups;
                    let n = len as f64;
                    let mean = vecmath::sum(src, 0.0, false) / n;
                    let var = vecmath::sum(src, mean as f32, true) / n;
                    let rstd = 1.0 / (var + eps).sqrt();
                    for ci in 0..cg {
                        let ch = g * cg + ci;
                        let scale = w[ch] as f64 * rstd;
                        let (scale, shift) = (scale as f32, (s[ch] as f64 - mean * scale) as f32);
                        let range = ci * spatial..(ci + 1) * spatial;
                        let dst = &mut dst[range.clone()];
                        for (o, &v) in dst.iter_mut().zip(&src[range]) {
                            *o = v * scale + shift;
                        }
                        if silu {
                            vecmath::silu_in_place(dst);
                        }
                    }
                })
        })?;
    }
    Tensor::from_vec(out, dims, x.device())
}

/// Multi-head attention, softmax(q·kᵀ·scale)·v, on the projections as they come out of the
/// linear layers: q (b, n, heads·d), k (b, m, heads·d), v (b, m, heads·dv); returns
/// (b, n, heads·dv), the heads side by side as `to_out` expects. Each task takes one head
/// of one image and a tile of query rows: its scores (tile × m) stay in a buffer of its
/// own, the softmax is taken there and only the tile's output rows are written. Only the
/// keys are copied (transposed per head).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, scale: f32) -> Result<Tensor> {
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let (b, n, cq) = q.dims3()?;
    let (bk, m, ck) = k.dims3()?;
    let (bv, mv, cv) = v.dims3()?;
    if b != bk || b != bv || m != mv || cq != ck {
        bail!(
            "attention: q {:?}, k {:?} and v {:?} do not fit together",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    if heads == 0 || cq % heads != 0 || cv % heads != 0 {
        bail!("attention: {cq} and {cv} channels do not split into {heads} heads");
    }
    let (d, dv) = (cq / heads, cv / heads);
    let mut out = vec![0f32; b * n * cv];
    if n == 0 || m == 0 || dv == 0 {
        return Tensor::from_vec(out, (b, n, cv), q.device());
    }
    // About 256 KB of scores per task, so the tile stays in the core's cache.
    let tile = (65_536 / m).clamp(16, 128).min(n);
    let tiles = n.div_ceil(tile);
    // Each head's keys transposed, (d, m) row-major: gemm multiplies by a row-major matrix
    // several times faster than by a transposed one, and every tile reuses it.
    let mut kt = vec![0f32; b * heads * d * m];
    with_data(&k, |kd| {
        kt.par_chunks_mut(d * m).enumerate().for_each(|(bh, dst)| {
            let (bi, h) = (bh / heads, bh % heads);
            for j in 0..m {
                let key = &kd[(bi * m + j) * ck + h * d..][..d];
                for (kk, &x) in key.iter().enumerate() {
                    dst[kk * m + j] = x;
                }
            }
        })
    })?;
    let sh = Heads {
        n,
        m,
        heads,
        d,
        dv,
        cq,
        cv,
        scale,
    };
    let dst = Out(out.as_mut_ptr());
    with_data(&q, |qd| {
        with_data(&v, |vd| {
            (0..b * heads * tiles).into_par_iter().for_each_init(
                || (Vec::new(), Vec::new()),
                |buffers, job| {
                    let (bh, t) = (job / tiles, job % tiles);
                    let row0 = t * tile;
                    let rows = row0..(row0 + tile).min(n);
                    // SAFETY: the tasks' (image, head, rows) are all different, the
                    // buffers hold the shapes `sh` describes, and `out` outlives the loop.
                    unsafe { attend_tile(sh, (qd, &kt, vd), dst, (bh, rows), buffers) }
                },
            )
        })
    })??;
    Tensor::from_vec(out, (b, n, cv), q.device())
}

/// The shapes of one attention call (see [`attention`]).
#[derive(Clone, Copy)]
struct Heads {
    n: usize,
    m: usize,
    heads: usize,
    d: usize,
    dv: usize,
    cq: usize,
    cv: usize,
    scale: f32,
}

/// Attention for query rows `rows` of head `bh % heads` of image `bh / heads`: scores into
/// `scores`, softmax there (the row sums' inverses in `inv`), the rows of the output.
///
/// # Safety
/// `q` is (b, n, cq), `kt` the per-head transposed keys (b·heads, d, m), `v` (b, m, cv) and
/// `dst` points at the (b, n, cv) output; no other thread touches the output rows `rows`
/// in this head's columns while this runs.
unsafe fn attend_tile(
    sh: Heads,
    (q, kt, v): (&[f32], &[f32], &[f32]),
    dst: Out,
    (bh, rows): (usize, std::ops::Range<usize>),
    (scores, inv): &mut (Vec<f32>, Vec<f32>),
) {
    let (bi, h) = (bh / sh.heads, bh % sh.heads);
    let (row0, count, m) = (rows.start, rows.len(), sh.m);
    scores.resize(count * m, 0.0);
    inv.resize(count, 0.0);
    // scores = scale · q_tile · k_headᵀ
    gemm(
        count,
        m,
        sh.d,
        scores.as_mut_ptr(),
        1,
        m as isize,
        false,
        q[(bi * sh.n + row0) * sh.cq + h * sh.d..].as_ptr(),
        1,
        sh.cq as isize,
        kt[bh * sh.d * m..].as_ptr(),
        1,
        m as isize,
        0.0,
        sh.scale,
        false,
        false,
        false,
        Parallelism::None,
    );
    for (row, inv) in scores.chunks_mut(m).zip(inv.iter_mut()) {
        let max = vecmath::max(row);
        *inv = (1.0 / vecmath::exp_shifted_sum(row, max)) as f32;
    }
    // out_tile = exp-scores · v_head, then each row divided by its sum.
    let first = (bi * sh.n + row0) * sh.cv + h * sh.dv;
    gemm(
        count,
        sh.dv,
        m,
        dst.at(first),
        1,
        sh.cv as isize,
        false,
        scores.as_ptr(),
        1,
        m as isize,
        v[bi * m * sh.cv + h * sh.dv..].as_ptr(),
        1,
        sh.cv as isize,
        0.0,
        1.0,
        false,
        false,
        false,
        Parallelism::None,
    );
    for (r, &s) in inv.iter().enumerate() {
        let row = std::slice::from_raw_parts_mut(dst.at(first + r * sh.cv), sh.dv);
        row.iter_mut().for_each(|x| *x *= s);
    }
}

/// The transpose of a 2-D tensor as a new contiguous one, spread over the threads: each
/// task writes 32 rows of the output, reading 32 contiguous values of every input row
/// (candle's strided copy goes element by element on one thread, which at load time costs
/// seconds on SDXL-sized weights).
pub fn transpose(w: &Tensor) -> Result<Tensor> {
    const BAND: usize = 32;
    let w = w.contiguous()?;
    let (rows, cols) = w.dims2()?;
    let mut out = vec![0f32; rows * cols];
    if rows > 0 && cols > 0 {
        with_data(&w, |src| {
            out.par_chunks_mut(BAND * rows)
                .enumerate()
                .for_each(|(t, dst)| {
                    let c0 = t * BAND;
                    let width = dst.len() / rows;
                    for (r, line) in src.chunks(cols).enumerate() {
                        for (j, &v) in line[c0..c0 + width].iter().enumerate() {
                            dst[j * rows + r] = v;
                        }
                    }
                })
        })?;
    }
    Tensor::from_vec(out, (cols, rows), w.device())
}

/// GEGLU's gate: the last dimension's first half times GELU (erf form) of its second half.
pub fn geglu(h: &Tensor) -> Result<Tensor> {
    let h = h.contiguous()?;
    let mut dims = h.dims().to_vec();
    let Some(last) = dims.last_mut() else {
        bail!("geglu: a scalar has no last dimension")
    };
    if *last % 2 != 0 {
        bail!("geglu: last dimension {} is odd", *last);
    }
    let inner = *last / 2;
    *last = inner;
    let rows = h.elem_count().checked_div(2 * inner).unwrap_or(0);
    let mut out = vec![0f32; rows * inner];
    if rows > 0 {
        // Enough rows per task to amortise scheduling, few enough to balance two threads.
        let per = (16_384 / inner).max(1);
        with_data(&h, |src| {
            out.par_chunks_mut(per * inner)
                .zip(src.par_chunks(per * 2 * inner))
                .for_each(|(dst, src)| {
                    for (o, s) in dst.chunks_mut(inner).zip(src.chunks(2 * inner)) {
                        let (value, gate) = s.split_at(inner);
                        vecmath::gelu_times(o, value, gate);
                    }
                })
        })?;
    }
    Tensor::from_vec(out, dims, h.device())
}

/// x · wᵀ + bias (+ residual) for x (…, in) and w (out, in): one gemm whose output starts
/// as the bias (plus the residual, of the output's shape, when given), so there is no
/// second pass to add them.
pub fn linear(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    let x = x.contiguous()?;
    let (o, i) = w.dims2()?;
    // The weight as gemm reads it: (in, out) row-major when the layer holds the transposed
    // layout of `nn::for_inference`, else (out, in) read as its transpose.
    let (w, rhs_cs, rhs_rs) = if !w.is_contiguous() && w.t()?.is_contiguous() {
        (w.t()?, 1, o as isize)
    } else {
        (w.contiguous()?, i as isize, 1)
    };
    let mut dims = x.dims().to_vec();
    match dims.last_mut() {
        Some(last) if *last == i => *last = o,
        _ => bail!("linear: input {:?} does not end in {i} features", x.dims()),
    }
    let rows = x.elem_count().checked_div(i).unwrap_or(0);
    if let Some(r) = residual.filter(|r| r.dims() != dims.as_slice()) {
        bail!(
            "linear: residual {:?} is not the output's shape {dims:?}",
            r.dims()
        );
    }
    let bias = bias.map(values).transpose()?;
    if let Some(b) = bias.as_ref().filter(|b| b.len() != o) {
        bail!("linear: {o} outputs but {} biases", b.len());
    }
    let mut out = vec![0f32; rows * o];
    let add = bias.as_deref().map_or(Add::Nothing, Add::PerColumn);
    start_from(&mut out, o, residual, add)?;
    if rows > 0 && o > 0 && i > 0 {
        with_data(&x, |xd| {
            with_data(&w, |wd| {
                // SAFETY: out is rows × o, x rows × i, w o × i (read as its transpose) or its
                // (i, o) transposed layout, as the strides say.
                unsafe {
                    product(
                        &mut out,
                        (xd, i),
                        (wd, rhs_cs, rhs_rs),
                        (rows, o, i),
                        bias.is_some() || residual.is_some(),
                    )
                }
            })
        })??;
    }
    Tensor::from_vec(out, dims, x.device())
}

/// What [`start_from`] adds to every row of an output.
#[derive(Clone, Copy)]
pub(crate) enum Add<'a> {
    Nothing,
    /// A row's worth of values (a linear layer's bias).
    PerColumn(&'a [f32]),
    /// One value per row (a convolution's bias and shift per image and channel).
    PerRow(&'a [f32]),
}

/// Fills `out`, rows of `len` values, with `residual` (the same layout, or nothing) plus
/// `add`, in parallel: where a product's output starts before gemm accumulates onto it.
pub(crate) fn start_from(
    out: &mut [f32],
    len: usize,
    residual: Option<&Tensor>,
    add: Add,
) -> Result<()> {
    if len == 0 || (residual.is_none() && matches!(add, Add::Nothing)) {
        return Ok(());
    }
    let fill = |row: usize, dst: &mut [f32], src: Option<&[f32]>| match (src, add) {
        (Some(s), Add::Nothing) => dst.copy_from_slice(s),
        (Some(s), Add::PerColumn(b)) => {
            for ((d, &s), &b) in dst.iter_mut().zip(s).zip(b) {
                *d = s + b;
            }
        }
        (Some(s), Add::PerRow(v)) => {
            for (d, &s) in dst.iter_mut().zip(s) {
                *d = s + v[row];
            }
        }
        (None, Add::Nothing) => {}
        (None, Add::PerColumn(b)) => dst.copy_from_slice(b),
        (None, Add::PerRow(v)) => dst.fill(v[row]),
    };
    match residual {
        Some(r) => {
            let r = r.contiguous()?;
            with_data(&r, |src| {
                out.par_chunks_mut(len)
                    .zip(src.par_chunks(len))
                    .enumerate()
                    .for_each(|(row, (dst, src))| fill(row, dst, Some(src)))
            })
        }
        None => {
            out.par_chunks_mut(len)
                .enumerate()
                .for_each(|(row, dst)| fill(row, dst, None));
            Ok(())
        }
    }
}

/// dst (m × n, rows `dst_rs` apart) = [dst +] lhs (m × k, rows `lhs_rs` apart) · rhs (k × n,
/// rows `rhs_rs` apart), on the calling thread: one block of a product whose blocks run
/// in parallel.
///
/// # Safety
/// `dst` and the slices reach every element their shapes and strides describe, and no
/// other thread touches the block of `dst` while this runs.
pub(crate) unsafe fn product_block(
    dst: *mut f32,
    dst_rs: usize,
    (lhs, lhs_rs): (&[f32], usize),
    (rhs, rhs_rs): (&[f32], usize),
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
) {
    let rhs = (rhs, 1, rhs_rs as isize);
    multiply(
        (dst, dst_rs),
        (lhs, lhs_rs),
        rhs,
        (m, n, k),
        accumulate,
        Parallelism::None,
    )
}

/// dst (m × n, row-major) = [dst +] lhs (m × k, rows `lhs_rs` apart) · rhs (k × n, with
/// its column and row strides), on all of rayon's threads. `accumulate` keeps what dst
/// holds (the bias) and adds the product to it.
///
/// # Safety
/// Each slice must hold every element its shape and strides reach.
unsafe fn product(
    dst: &mut [f32],
    lhs: (&[f32], usize),
    rhs: (&[f32], isize, isize),
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
) {
    let dst = (dst.as_mut_ptr(), n);
    multiply(dst, lhs, rhs, (m, n, k), accumulate, parallelism())
}

/// gemm's call for the row-major f32 products above.
///
/// # Safety
/// As for [`product_block`], with `rhs`' column stride as given.
unsafe fn multiply(
    (dst, dst_rs): (*mut f32, usize),
    (lhs, lhs_rs): (&[f32], usize),
    (rhs, rhs_cs, rhs_rs): (&[f32], isize, isize),
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
    threads: Parallelism,
) {
    // An empty product adds nothing; the outputs here start zeroed or from their start.
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs.as_ptr(),
        1,
        lhs_rs as isize,
        rhs.as_ptr(),
        rhs_cs,
        rhs_rs,
        1.0,
        1.0,
        false,
        false,
        false,
        threads,
    )
}

#[cfg(test)]
#[path = "kernels_tests.rs"]
mod tests;
