/* An empty shared library, preloaded by scripts/bench.sh to measure what loading any
 * library into a process costs (opening and mapping the file, relocating it, page
 * faults): the floor of the per-exec cost of every LD_PRELOAD library. */
int bench_empty_library;
