// Host "Arduino shim" for the LED-ring protocol core: a virtual millisecond clock, a settable A0 reading,
// captured serial output and WS2812 frames, and a reboot flag. Used by the host tests and the fuzzer.
#ifndef LEDRING_HOST_PLATFORM_H
#define LEDRING_HOST_PLATFORM_H

#include <stdint.h>

#include <string>
#include <vector>

struct HostPlatform {
    uint32_t now_ms = 0;               // uptime; reset to 0 by host_boot()
    uint16_t adc = 419;                // every A0 conversion returns this
    uint32_t adc_reads = 0;
    std::string out;                   // bytes written to the serial port
    std::vector<std::vector<uint8_t>> frames;  // WS2812 frames (GRB wire bytes)
    bool reboot_requested = false;
    uint32_t boots = 0;
};

extern HostPlatform g_host;

// Power-up: uptime 0, then ledring_boot(). Keeps adc.
void host_boot();
// Feed bytes; reboots (host_boot) when the core requested it.
void host_feed(const std::string &bytes, bool lost_before_first = false);
// Advance the clock 1 ms at a time, calling ledring_poll() after each step.
void host_advance(uint32_t ms);
// Remove and return everything written to the serial port so far.
std::string host_take_output();

#endif
