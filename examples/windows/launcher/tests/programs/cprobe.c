/* A Winsock TCP program for the Wine end-to-end tests (tests/windows_wine.rs).
 *   cprobe server PORT TAG [ADDR]  bind ADDR:PORT (default 127.0.0.1), listen, print "bound A:P"
 *                                  and "ready"; accept one client, print "accepted A:P" (accept's
 *                                  address) and "peer A:P" (getpeername), send TAG, exit 0
 *   cprobe client PORT [getproc|ADDR]  connect to 127.0.0.1:PORT (with `getproc`, through a
 *                                  connect resolved with GetProcAddress; to ADDR:PORT when an
 *                                  address is given), print "local A:P", "peer A:P" and
 *                                  "got TEXT", exit 0
 *   cprobe spawn HOW COMMAND...    listen on 127.0.0.1:0 and print "spawner A:P" (as the system
 *                                  has it when the spawner is not hooked), then run COMMAND (its
 *                                  words joined by spaces) as a child: HOW is `create`
 *                                  (CreateProcessW), `cmd` (CreateProcessW of `cmd.exe /c
 *                                  COMMAND`), `system` (the C runtime's system()), `spawnv`
 *                                  (_spawnv), `execv` (_execv: this process ends, the child
 *                                  stays), `shell` (ShellExecuteExW), `uv` (what libuv's
 *                                  uv_spawn does: CreateProcessW suspended with a Unicode
 *                                  environment block of its own, the child put in a job object
 *                                  that kills it with the parent, then resumed), `wait-create`
 *                                  (CreateProcessW after a line on stdin) or `detach`
 *                                  (CreateProcessW, then exit 0 at once); wait for it and exit
 *                                  with its exit code
 * Any failure prints "error WHAT CODE" and exits 1. */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <shellapi.h>
#include <process.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

static void show(const char *what, const struct sockaddr_in *a)
{
    printf("%s %s:%u\n", what, inet_ntoa(a->sin_addr), ntohs(a->sin_port));
    fflush(stdout);
}

static int fail(const char *what)
{
    printf("error %s %d\n", what, WSAGetLastError());
    fflush(stdout);
    return 1;
}

typedef int (WSAAPI *connect_fn)(SOCKET, const struct sockaddr *, int);

/* The words of argv from `from` on, joined by spaces, after `prefix`. */
static wchar_t *joined(const wchar_t *prefix, int argc, char **argv, int from)
{
    static wchar_t line[4096];
    int i, n = swprintf(line, 4096, L"%ls", prefix);
    for (i = from; i < argc && n >= 0 && n < 4000; i++)
        n += swprintf(line + n, 4096 - n, L"%hs%hs", i > from ? " " : "", argv[i]);
    return line;
}

static int spawn(int argc, char **argv)
{
    STARTUPINFOW si;
    PROCESS_INFORMATION pi;
    DWORD code = 1;
    const char *how = argv[2];
    int cmd = strcmp(how, "cmd") == 0;
    if (strcmp(how, "system") == 0) {
        char line[4096];
        int i, n = 0;
        line[0] = 0;
        for (i = 3; i < argc && n < 4000; i++)
            n += snprintf(line + n, sizeof line - n, "%s%s", i > 3 ? " " : "", argv[i]);
        return system(line);
    }
    if (strcmp(how, "spawnv") == 0)
        return (int)_spawnv(_P_WAIT, argv[3], (const char *const *)&argv[3]);
    if (strcmp(how, "execv") == 0) {
        _execv(argv[3], (const char *const *)&argv[3]);
        printf("error execv %d\n", errno);
        fflush(stdout);
        return 1;
    }
    if (strcmp(how, "shell") == 0) {
        SHELLEXECUTEINFOW sei;
        wchar_t file[1024];
        memset(&sei, 0, sizeof sei);
        sei.cbSize = sizeof sei;
        sei.fMask = SEE_MASK_NOCLOSEPROCESS | SEE_MASK_NO_CONSOLE | SEE_MASK_FLAG_NO_UI;
        swprintf(file, 1024, L"%hs", argv[3]);
        sei.lpFile = file;
        sei.lpParameters = joined(L"", argc, argv, 4);
        sei.nShow = SW_HIDE;
        if (!ShellExecuteExW(&sei) || !sei.hProcess) {
            printf("error ShellExecuteEx %lu\n", GetLastError());
            fflush(stdout);
            return 1;
        }
        WaitForSingleObject(sei.hProcess, INFINITE);
        GetExitCodeProcess(sei.hProcess, &code);
        CloseHandle(sei.hProcess);
        return (int)code;
    }
    if (strcmp(how, "wait-create") == 0) {
        char buf[16];
        printf("waiting\n");
        fflush(stdout);
        if (!fgets(buf, sizeof buf, stdin))
            return 2;
    } else if (strcmp(how, "uv") == 0) {
        /* libuv's uv_spawn (src/win/process.c): its own environment block, CREATE_SUSPENDED,
         * a global job with KILL_ON_JOB_CLOSE, then ResumeThread. */
        static wchar_t env[32768];
        wchar_t *own = GetEnvironmentStringsW(), *p = own;
        size_t n = 0;
        HANDLE job = CreateJobObjectW(NULL, NULL);
        JOBOBJECT_EXTENDED_LIMIT_INFORMATION limits;
        while (*p && n < 32000) {
            size_t len = wcslen(p) + 1;
            if (_wcsnicmp(p, L"IPVIRT_", 7) != 0) { /* a program may pass anything */
                memcpy(env + n, p, len * sizeof *p);
                n += len;
            }
            p += len;
        }
        env[n] = 0;
        FreeEnvironmentStringsW(own);
        memset(&limits, 0, sizeof limits);
        limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_BREAKAWAY_OK
            | JOB_OBJECT_LIMIT_SILENT_BREAKAWAY_OK | JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
        SetInformationJobObject(job, JobObjectExtendedLimitInformation, &limits, sizeof limits);
        memset(&si, 0, sizeof si);
        si.cb = sizeof si;
        if (!CreateProcessW(NULL, joined(L"", argc, argv, 3), NULL, NULL, TRUE,
                            CREATE_UNICODE_ENVIRONMENT | CREATE_SUSPENDED, env, NULL, &si, &pi)) {
            printf("error CreateProcess %lu\n", GetLastError());
            fflush(stdout);
            return 1;
        }
        AssignProcessToJobObject(job, pi.hProcess); /* libuv carries on when this fails */
        if (ResumeThread(pi.hThread) == (DWORD)-1)
            return fail("ResumeThread");
        WaitForSingleObject(pi.hProcess, INFINITE);
        GetExitCodeProcess(pi.hProcess, &code);
        return (int)code;
    } else if (!cmd && strcmp(how, "create") != 0 && strcmp(how, "detach") != 0)
        return 2;
    memset(&si, 0, sizeof si);
    si.cb = sizeof si;
    if (!CreateProcessW(NULL, joined(cmd ? L"cmd.exe /c " : L"", argc, argv, 3), NULL, NULL,
                        TRUE, 0, NULL, NULL, &si, &pi)) {
        printf("error CreateProcess %lu\n", GetLastError());
        fflush(stdout);
        return 1;
    }
    if (strcmp(how, "detach") == 0)
        return 0;
    WaitForSingleObject(pi.hProcess, INFINITE);
    GetExitCodeProcess(pi.hProcess, &code);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    return (int)code;
}

int main(int argc, char **argv)
{
    WSADATA wsa;
    struct sockaddr_in a, b;
    int len;
    char buf[256];
    SOCKET s;
    if (argc < 3 || WSAStartup(MAKEWORD(2, 2), &wsa) != 0)
        return 2;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((u_short)atoi(argv[2]));
    a.sin_addr.s_addr = inet_addr("127.0.0.1");
    s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (s == INVALID_SOCKET)
        return fail("socket");
    if (strcmp(argv[1], "server") == 0 && argc >= 4) {
        SOCKET c;
        if (argc >= 5)
            a.sin_addr.s_addr = inet_addr(argv[4]);
        if (bind(s, (struct sockaddr *)&a, sizeof a) != 0)
            return fail("bind");
        if (listen(s, 4) != 0)
            return fail("listen");
        len = sizeof b;
        if (getsockname(s, (struct sockaddr *)&b, &len) != 0)
            return fail("getsockname");
        show("bound", &b);
        printf("ready\n");
        fflush(stdout);
        len = sizeof b;
        c = accept(s, (struct sockaddr *)&b, &len);
        if (c == INVALID_SOCKET)
            return fail("accept");
        show("accepted", &b);
        len = sizeof b;
        if (getpeername(c, (struct sockaddr *)&b, &len) != 0)
            return fail("getpeername");
        show("peer", &b);
        send(c, argv[3], (int)strlen(argv[3]), 0);
        shutdown(c, SD_SEND);
        recv(c, buf, sizeof buf, 0);
        closesocket(c);
        return 0;
    }
    if (strcmp(argv[1], "spawn") == 0 && argc >= 4) {
        a.sin_port = 0;
        if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 1) != 0)
            return fail("bind");
        len = sizeof b;
        if (getsockname(s, (struct sockaddr *)&b, &len) != 0)
            return fail("getsockname");
        show("spawner", &b);
        return spawn(argc, argv);
    }
    if (strcmp(argv[1], "client") == 0) {
        int n, total = 0;
        if (argc >= 4 && strcmp(argv[3], "getproc") == 0) {
            HMODULE ws2 = GetModuleHandleA("ws2_32.dll");
            connect_fn f = (connect_fn)(void (*)(void))GetProcAddress(ws2, "connect");
            if (!f || f(s, (struct sockaddr *)&a, sizeof a) != 0)
                return fail("connect");
        } else {
            if (argc >= 4)
                a.sin_addr.s_addr = inet_addr(argv[3]);
            if (connect(s, (struct sockaddr *)&a, sizeof a) != 0)
                return fail("connect");
        }
        len = sizeof b;
        if (getsockname(s, (struct sockaddr *)&b, &len) != 0)
            return fail("getsockname");
        show("local", &b);
        len = sizeof b;
        if (getpeername(s, (struct sockaddr *)&b, &len) != 0)
            return fail("getpeername");
        show("peer", &b);
        while ((n = recv(s, buf + total, (int)sizeof buf - 1 - total, 0)) > 0)
            total += n;
        buf[total] = 0;
        printf("got %s\n", buf);
        fflush(stdout);
        closesocket(s);
        return 0;
    }
    return 2;
}
