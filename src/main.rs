/// jemalloc instead of glibc's malloc, for memory held by idle connections. hyper gives each
/// connection an 8 KiB read buffer and an 8 KiB write buffer, of which a live feed uses a few
/// hundred bytes. glibc carves them from memory that other allocations have already touched,
/// so nearly all of it is resident; jemalloc keeps 8 KiB allocations in slabs of their own,
/// and the pages a buffer never writes are never resident. Measured with 10,000 idle live
/// feeds on one instance: 17.6 KiB of RSS a feed with glibc, 11.1 KiB with jemalloc
/// (docs/benchmarks.md, "Live feeds"). Done here, not with MALLOC_* environment variables, so
/// that every way of running the service gets it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    neuronmeet::cli::main()
}
