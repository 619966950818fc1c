/* Pins the glibc symbols the shim imports to their oldest versions, so that a shim built on a new
 * glibc (where dlopen & co. moved into libc at GLIBC_2.34) still loads in user images with glibc
 * 2.27. Included first by every shim source (-include). The shim_exports test checks the result
 * with objdump -T. Avoid new glibc functions in the shim (pthread_once, pidfd_open, stat...):
 * old images have them in libpthread or not at all.
 */
#ifndef SLICER_SHIM_GLIBC_COMPAT_H_
#define SLICER_SHIM_GLIBC_COMPAT_H_

#if defined(__x86_64__)
#define SLICER_GLIBC_BASE "GLIBC_2.2.5"
#elif defined(__aarch64__)
#define SLICER_GLIBC_BASE "GLIBC_2.17"
#endif

#ifdef SLICER_GLIBC_BASE
__asm__(".symver dlopen,dlopen@" SLICER_GLIBC_BASE);
__asm__(".symver dlvsym,dlvsym@" SLICER_GLIBC_BASE);
__asm__(".symver dlerror,dlerror@" SLICER_GLIBC_BASE);
__asm__(".symver dladdr,dladdr@" SLICER_GLIBC_BASE);
/* The arbiter client's thread: in libpthread before 2.34 (the shim NEEDs libpthread.so.0 so that
 * old glibc finds them there), in libc with new default versions since. */
__asm__(".symver pthread_create,pthread_create@" SLICER_GLIBC_BASE);
__asm__(".symver pthread_join,pthread_join@" SLICER_GLIBC_BASE);
__asm__(".symver pthread_attr_setstacksize,pthread_attr_setstacksize@" SLICER_GLIBC_BASE);
/* Its launcher slots, freed at thread exit. */
__asm__(".symver pthread_key_create,pthread_key_create@" SLICER_GLIBC_BASE);
__asm__(".symver pthread_setspecific,pthread_setspecific@" SLICER_GLIBC_BASE);
#if defined(__x86_64__)
__asm__(".symver pthread_condattr_setclock,pthread_condattr_setclock@GLIBC_2.3.3");
#else
__asm__(".symver pthread_condattr_setclock,pthread_condattr_setclock@" SLICER_GLIBC_BASE);
#endif
#endif

#endif /* SLICER_SHIM_GLIBC_COMPAT_H_ */
