// Build-time configuration of the scopectl LED-ring firmware (override with -D, see firmware/Makefile).
#ifndef LEDRING_CONFIG_H
#define LEDRING_CONFIG_H

#define LEDRING_FW_VERSION "1.0.0"
#define LEDRING_PROTOCOL 1
#define LEDRING_NUM_LEDS 12

// Battery divider: V(battery) = V(A0) * DIVIDER_NUM / DIVIDER_DEN.
#ifndef DIVIDER_NUM
#define DIVIDER_NUM 2
#endif
#ifndef DIVIDER_DEN
#define DIVIDER_DEN 1
#endif
// ADC reference (AVcc) in millivolts.
#ifndef VREF_MV
#define VREF_MV 5000
#endif

#define LEDRING_DEFAULT_TIMEOUT_MS 10000UL
#define LEDRING_MAX_TIMEOUT_MS 600000UL
#define LEDRING_LOWBAT_MV 3300UL
#define LEDRING_LOWBAT_REARM_MV 3400UL
#define LEDRING_BAT_CHECK_PERIOD_MS 1000UL
#define LEDRING_BAT_SAMPLES 16

// Request lines: at most 96 bytes including '\n'.
#define LEDRING_MAX_LINE 96
// Board lines: at most 110 bytes including '\n'.
#define LEDRING_MAX_REPLY 112

#endif
