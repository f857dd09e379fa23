/* LD_PRELOAD shim for the test Orthanc: a listening socket bound to "any address" (0.0.0.0 or
 * ::) is bound to the loopback address instead (127.0.0.1 or ::1). Orthanc 1.10 has no setting
 * for the address its DICOM port listens on (its HTTP port neither: RemoteAccessAllowed only
 * refuses remote clients after accepting them), and the project's servers bind loopback only.
 * Built by tests/engine/hospital/orthanc.py with the system C compiler. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real_bind)(int, const struct sockaddr *, socklen_t);
    if (!real_bind)
        real_bind = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    if (addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in loop;
        memcpy(&loop, addr, sizeof loop);
        if (loop.sin_addr.s_addr == htonl(INADDR_ANY)) {
            loop.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real_bind(fd, (const struct sockaddr *)&loop, sizeof loop);
        }
    } else if (addr && addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 loop;
        memcpy(&loop, addr, sizeof loop);
        if (memcmp(&loop.sin6_addr, &in6addr_any, sizeof in6addr_any) == 0) {
            loop.sin6_addr = in6addr_loopback;
            return real_bind(fd, (const struct sockaddr *)&loop, sizeof loop);
        }
    }
    return real_bind(fd, addr, len);
}
