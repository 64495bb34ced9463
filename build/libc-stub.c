/*
 * libc-stub.c: stand-ins for the five C library symbols the preloaded library uses,
 * with no symbol versions. build.rs links the library against this file built as
 * "libc.so.6", so that the library names libc.so.6 (DT_NEEDED) but asks for no
 * version of anything: at run time the loader finds the program's own C library
 * under that name (glibc from 2.17, or musl, which takes libc.so.6 for itself), or
 * loads glibc for a program that has none (a Go binary built as PIE without cgo),
 * and binds the symbols there. Nothing here ever runs.
 */
int *__errno_location(void) { return 0; }
long syscall(long number, ...) { return number; }
char **environ;
void *memcpy(void *to, const void *from, unsigned long n) { (void)from; (void)n; return to; }
void *dlsym(void *handle, const char *name) { (void)name; return handle; }
