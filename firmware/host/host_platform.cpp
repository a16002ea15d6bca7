#include "host_platform.h"

#include "ledring_core.h"
#include "ledring_platform.h"

HostPlatform g_host;

uint32_t plat_millis(void) { return g_host.now_ms; }

void plat_write(const uint8_t *data, uint8_t len) { g_host.out.append(reinterpret_cast<const char *>(data), len); }

void plat_ws2812_show(const uint8_t *grb, uint8_t len) { g_host.frames.emplace_back(grb, grb + len); }

uint16_t plat_adc_read_a0(void) {
    g_host.adc_reads++;
    return g_host.adc;
}

void plat_reboot(void) { g_host.reboot_requested = true; }

void host_boot() {
    g_host.now_ms = 0;
    g_host.reboot_requested = false;
    g_host.boots++;
    ledring_boot();
}

void host_feed(const std::string &bytes, bool lost_before_first) {
    bool lost = lost_before_first;
    for (char c : bytes) {
        if (lost) ledring_rx_lost();
        lost = false;
        ledring_rx_byte(static_cast<uint8_t>(c));
        if (g_host.reboot_requested) host_boot();
    }
}

void host_advance(uint32_t ms) {
    for (uint32_t i = 0; i < ms; i++) {
        g_host.now_ms++;
        ledring_poll();
    }
}

std::string host_take_output() {
    std::string s;
    s.swap(g_host.out);
    return s;
}
