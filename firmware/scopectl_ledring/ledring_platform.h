// Hooks the portable protocol core (ledring_core.cpp) needs from its platform.
// Implemented for the ATmega328P in platform_avr.cpp / ws2812_avr.cpp and for the host tests and the
// fuzzer in firmware/host/host_platform.cpp.
#ifndef LEDRING_PLATFORM_H
#define LEDRING_PLATFORM_H

#include <stdint.h>

// Milliseconds since boot (wraps after 2^32 ms).
uint32_t plat_millis(void);
// Write bytes to the serial port; returns when they are queued/transmitted.
void plat_write(const uint8_t *data, uint8_t len);
// Send one WS2812 frame (len bytes in wire order G,R,B per LED); returns with interrupts enabled again.
void plat_ws2812_show(const uint8_t *grb, uint8_t len);
// One 10-bit conversion of analog input A0 (reference AVcc).
uint16_t plat_adc_read_a0(void);
// Reboot the board (on the AVR through the watchdog; does not return there). Called after the reply to
// RESET has been written.
void plat_reboot(void);

#endif
