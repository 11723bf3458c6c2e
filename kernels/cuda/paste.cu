// Fused paste-back: for every canvas pixel, resample each covering patch and its alpha bilinearly
// and blend it over the pixel, all instances in order, in one launch. The torch path needs a
// full-canvas grid_sample, a blend and a copy per instance.
//
// Launch: block (32, 8), grid (ceil(W/32), ceil(H/8), B). One thread owns one pixel of one image,
// so the sequential instance loop keeps the paste order without synchronisation.
// Conventions match blend.py: pixel centres at +0.5, box membership [x1, x2) x [y1, y2),
// grid_sample(align_corners=False, padding_mode="border") sampling, out = bg + a * (fg - bg).

#define MIN_EXTENT 1e-6f

__device__ __forceinline__ float bilerp(const float* __restrict__ plane, const int w, const int u0, const int u1,
                                        const int v0, const int v1, const float fu, const float fv)
{
    const float top = plane[v0 * w + u0] + fu * (plane[v0 * w + u1] - plane[v0 * w + u0]);
    const float bottom = plane[v1 * w + u0] + fu * (plane[v1 * w + u1] - plane[v1 * w + u0]);
    return top + fv * (bottom - top);
}

// Continuous patch coordinate of canvas coordinate `c` in a box [lo, hi) spanning `size` patch pixels.
__device__ __forceinline__ float patch_coord(const float c, const float lo, const float hi, const int size)
{
    const float t = (c - lo) / fmaxf(hi - lo, MIN_EXTENT);
    return fminf(fmaxf(t * size - 0.5f, 0.0f), (float)(size - 1));
}

extern "C" __global__ void paste_blend(float* __restrict__ canvas, const int C, const int H, const int W,
                                       const float* __restrict__ patches, const float* __restrict__ alphas,
                                       const float* __restrict__ boxes, const long long* __restrict__ image_index,
                                       const int N, const int h, const int w)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    const int b = blockIdx.z;
    if (x >= W || y >= H) return;

    const float cx = x + 0.5f, cy = y + 0.5f;
    const long long plane = (long long)H * W;
    const long long patch_plane = (long long)h * w;
    float* pixel = canvas + (long long)b * C * plane + (long long)y * W + x;

    for (int i = 0; i < N; ++i) {
        if (image_index[i] != b) continue;
        const float x1 = boxes[4 * i], y1 = boxes[4 * i + 1], x2 = boxes[4 * i + 2], y2 = boxes[4 * i + 3];
        if (!(cx >= x1 && cx < x2 && cy >= y1 && cy < y2)) continue;

        const float u = patch_coord(cx, x1, x2, w), v = patch_coord(cy, y1, y2, h);
        const int u0 = (int)floorf(u), v0 = (int)floorf(v);
        const int u1 = min(u0 + 1, w - 1), v1 = min(v0 + 1, h - 1);
        const float fu = u - u0, fv = v - v0;

        const float a = bilerp(alphas + i * patch_plane, w, u0, u1, v0, v1, fu, fv);
        for (int c = 0; c < C; ++c) {
            const float fg = bilerp(patches + (i * C + c) * patch_plane, w, u0, u1, v0, v1, fu, fv);
            float* dst = pixel + c * plane;
            *dst = *dst + a * (fg - *dst);
        }
    }
}
