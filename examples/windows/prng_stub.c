/* bcryptprimitives.dll for Wine 8.0 prefixes: exports ProcessPrng, which current Rust std imports
 * (Rust programs built for x86_64-pc-windows-gnu exit silently with code 53 under Debian's Wine 8,
 * which lacks it). It fills the buffer from RtlGenRandom (advapi32!SystemFunction036), as Windows'
 * own ProcessPrng fills it from the system RNG. Windows 10 and later have the real one: never
 * install this there.
 *
 *   x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll prng_stub.c -ladvapi32
 *   cp bcryptprimitives.dll "$WINEPREFIX/drive_c/windows/system32/"
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
