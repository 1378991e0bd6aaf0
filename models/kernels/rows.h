/* Rows split over OpenMP threads, shared by the kernels in this folder.
 *
 * The library links the libgomp PyTorch has loaded (same soname), so its threads are
 * PyTorch's, not a second pool spinning against them. `fn` handles rows [row0, row1) and
 * returns nonzero when it fails (out of memory). */
#ifndef ROBUST_ROWS_H
#define ROBUST_ROWS_H
#include <stdint.h>

typedef int (*row_fn)(const void *args, int64_t row0, int64_t row1);

static int run_rows(row_fn fn, const void *args, int64_t rows, int threads) {
    if (threads < 1) threads = 1;
    if (threads > rows) threads = (int)(rows > 0 ? rows : 1);
    int failed = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(| : failed)
    for (int i = 0; i < threads; i++)
        failed |= fn(args, rows * i / threads, rows * (i + 1) / threads) != 0;
    return failed;
}
#endif
