/* A panic inside ipvirt reaches the C caller as IPVIRT_PANIC, writes nothing, and leaves the
 * process and the library usable. Needs a library built with the cargo feature "capi-test-panic"
 * and -DIPVIRT_TEST_PANIC. Built and run by tests/capi.rs. */
#include "ipvirt.h"

#include <stdio.h>
#include <string.h>

static int failures = 0;
#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            printf("FAIL line %d: %s\n", __LINE__, #cond);                       \
            failures++;                                                          \
        }                                                                        \
    } while (0)

static const char POLICY[] =
    "[virtual_loopback]\n"
    "enabled = true\n"
    "programs = [\"crm.exe\"]\n";

int main(void) {
    char msg[64] = "untouched";
    size_t needed = 99;

    /* status_message: the panic, then the same call working */
    ipvirt_test_arm_panic();
    CHECK(ipvirt_status_message(IPVIRT_OK, msg, sizeof msg, &needed) == IPVIRT_PANIC);
    CHECK(strcmp(msg, "untouched") == 0 && needed == 99);
    CHECK(ipvirt_status_message(IPVIRT_PANIC, msg, sizeof msg, &needed) == IPVIRT_OK);
    CHECK(strstr(msg, "panicked") != NULL);

    /* engine_new: no handle, no message */
    ipvirt_engine *engine = NULL;
    strcpy(msg, "untouched");
    needed = 99;
    ipvirt_test_arm_panic();
    CHECK(ipvirt_engine_new((const uint8_t *)POLICY, strlen(POLICY), NULL, 0, &engine, msg, sizeof msg, &needed) == IPVIRT_PANIC);
    CHECK(engine == NULL && strcmp(msg, "untouched") == 0 && needed == 99);
    CHECK(ipvirt_engine_new((const uint8_t *)POLICY, strlen(POLICY), NULL, 0, &engine, NULL, 0, NULL) == IPVIRT_OK);
    CHECK(engine != NULL);

    ipvirt_plan plan;
    CHECK(ipvirt_engine_process(engine, (const uint8_t *)"crm.exe", 7, &plan) == IPVIRT_OK);
    ipvirt_rewriter *rw = NULL;
    ipvirt_test_arm_panic();
    CHECK(ipvirt_rewriter_new(engine, 7, 0, &plan, NULL, 0, &rw) == IPVIRT_PANIC);
    CHECK(rw == NULL);
    CHECK(ipvirt_rewriter_new(engine, 7, 0, &plan, NULL, 0, &rw) == IPVIRT_OK);

    /* bind and connect: the address, the source and the flags stay as they were */
    uint8_t sin[16] = {2, 0, 0x23, 0x28, 127, 0, 0, 1};
    uint8_t source[28];
    memset(source, 0x77, sizeof source);
    uint32_t changed = 9;
    size_t written = 99;
    ipvirt_test_arm_panic();
    CHECK(ipvirt_rewriter_bind(rw, sin, sizeof sin, IPVIRT_LAYOUT_LINUX, 0, &changed) == IPVIRT_PANIC);
    CHECK(sin[7] == 1 && changed == 9);
    ipvirt_test_arm_panic();
    CHECK(ipvirt_rewriter_connect(rw, sin, sizeof sin, IPVIRT_LAYOUT_LINUX, source, sizeof source, &written, &changed) == IPVIRT_PANIC);
    CHECK(sin[7] == 1 && source[0] == 0x77 && written == 99 && changed == 9);
    /* ... and the next calls work. */
    CHECK(ipvirt_rewriter_bind(rw, sin, sizeof sin, IPVIRT_LAYOUT_LINUX, 0, &changed) == IPVIRT_OK);
    CHECK(sin[7] == 8 && changed == 1);

    ipvirt_engine_free(engine);
    ipvirt_rewriter_free(rw);
    printf("%d failures\n", failures);
    return failures == 0 ? 0 : 1;
}
