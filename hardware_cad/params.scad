// scopectl smartphone microscope: shared parameters (every part file `include`s this file).
//
// Units: millimetres.  Assembly frame: origin on the optical axis at the top face of the electronics
// housing (= underside of the stage frame), x along the slide's long side, y towards the back wall,
// z up.  The phone lies screen-up on top; its rear camera looks down through the external lens at
// the slide; the LED ring shines up through the diffuser from below.
//
// Change the "measure yours" values for your phone and lens, then `make -C hardware_cad`.
// `make -C hardware_cad report` prints every computed distance (see docs/build-guide.md).

// ---------------------------------------------------------------- phone (measure yours)
// Defaults: Nokia Lumia 1020, the paper's phone (130.4 x 71.4 x 10.4 mm body).
phone_width = 71.4;          // body width
phone_length = 130.4;        // body length
phone_thickness = 10.4;      // body thickness, without the camera island
camera_x = 35.7;             // optical axis from the long edge that is on the LEFT when you look at the back, camera end up
camera_y = 21.0;             // optical axis from the short edge at the camera end
camera_island_w = 24.0;      // raised camera island across the phone (0 if the camera is flush)
camera_island_l = 24.0;      // raised camera island along the phone
camera_island_h = 3.5;       // height of the island above the back (0 if flush)
phone_focal_length = 7.2;    // focal length of the phone's own camera lens (Lumia 1020: 7.2 mm)
phone_f_number = 2.2;        // its f-number (entrance pupil = focal length / f-number)
phone_pixel_um = 1.12;       // sensor pixel pitch, µm

// ---------------------------------------------------------------- external lens (from its data sheet)
lens_focal_length = 2.6;     // effective focal length (the paper: 2.6 mm)
lens_principal_depth = 0.3;  // sample-side vertex to front principal plane = EFL - front focal distance
lens_barrel_d = 6.0;         // outer diameter of the lens or its barrel
lens_barrel_len = 3.0;       // length of the barrel along the axis
lens_vertex_recess = 0.0;    // how far the front vertex sits inside the barrel's sample-side face
lens_clear_d = 2.5;          // clear aperture (sets the lip's hole and the objective NA)
lens_window_gap = 0.3;       // air gap between the lens barrel and the phone's camera window
lens_press_fit = 0.05;       // added to the barrel diameter for the bore (ABS; 0.05 = firm press fit)
lens_lip_t = 0.4;            // lip under the lens (two 0.2 mm layers)
fov_d = 1.13;                // field of view at the sample (the paper: ~1 mm^2)

// ---------------------------------------------------------------- slide (ISO 8037-1) and cover glass
slide_w = 75.0;
slide_d = 25.0;
slide_t = 1.0;
coverslip_t = 0.17;          // No. 1.5 cover glass
glass_n = 1.52;
slide_proud = 0.2;           // slide top stands this far above the tray top

// ---------------------------------------------------------------- illumination
ring_od = 37.0;              // Adafruit NeoPixel Ring 12 (product 1643): 37 mm outside
ring_id = 23.0;              //   and 23 mm inside diameter
ring_pcb_t = 1.6;
ring_led_h = 1.6;            // WS2812B 5050 package height
ring_fit = 0.15;             // radial clearance of the ring in its pocket (friction fit)
led_emission_m = 1;          // LED intensity ~ cos^m(angle): 1 = Lambertian (WS2812B)
diffuser_t = 0.1;            // Zenith polymer diffuser SG 3201: 100 µm, 50 % transmission
retainer_t = 1.2;            // cap that clamps the diffuser
tube_floor_t = 1.5;
tube_wall = 2.0;

// ---------------------------------------------------------------- stage
x_travel = 12.0;             // ± lateral travel along the slide
y_travel = 5.0;              // ± lateral travel across the slide
z_travel_up = 1.2;           // focus travel towards the lens from the nominal focus
z_travel_down = 2.0;         // focus travel away from the lens
min_lens_clearance = 0.2;    // cover glass to clamp at full upward travel
tray_margin_x = 9.0;           // room for the x nut beyond the slide pocket
tray_margin_y = 6.0;
tray_t = 6.0;
tray_ledge_x = 8.0;          // slide support at the ends of the tray window
tray_ledge_y = 2.0;          // slide support along the sides of the tray window
slider_t = 3.0;              // y slider plate
platform_t = 4.0;            // z carriage platform
rail_w = 3.0;
rail_h = 2.5;
block_w = 8.0;               // screw blocks (x and y drives)
ytab_w = 12.0;
zc_block_d = 12.0;           // z carriage block depth (y)
dt_w_root = 10.0;            // dovetail rail width at the wall
dt_w_face = 14.0;            //   and at its face
dt_depth = 4.0;
wall_t = 10.0;
base_t = 5.0;
frame_w = 90.0;
z_gap = 1.0;                 // diffuser cap to platform at the lowest focus
spring_gap = 5.0;            // y slider to z carriage block at the back end of the y travel
clamp_bolt_dx = 30.0;
knob_d = 16.0;
knob_t = 6.0;
housing_h = 32.0;

// ---------------------------------------------------------------- hardware and printing
screw_d = 3.0;               // M3
screw_clear_d = 3.4;
screw_pilot_d = 2.5;         // self-tapping into ABS
screw_head_d = 5.5;
screw_head_h = 3.0;
nut_af = 5.5;                // M3 nut across flats
nut_t = 2.4;
clearance = 0.3;             // sliding fits
wall = 2.0;
phone_fit = 0.4;             // clearance around the phone body
lip_overhang = 1.5;          // clamp lips over the screen edge
lip_t = 1.2;
$fn = 48;                    // keep a multiple of 4: bounding boxes of circles stay exact

// ================================================================ computed (do not edit)
// Optics: sample at the external lens's front focal plane, phone camera focused at infinity
// (a 4f-like relay): lateral magnification = phone f / external f.
magnification = phone_focal_length / lens_focal_length;
pixel_size_at_sample_um = phone_pixel_um / magnification;
lens_working_distance = lens_focal_length - lens_principal_depth;      // front focal distance in air
cover_glass_shift = coverslip_t * (1 - 1 / glass_n);                   // focus moves away by t(1-1/n)
sample_gap = lens_working_distance + cover_glass_shift;                // lens front vertex -> sample plane
objective_na = sin(atan(min(lens_clear_d / 2, phone_focal_length / phone_f_number / 2) / lens_focal_length));
// Illumination: LED circle radius R; at height h = R*sqrt((m+3)/2) the irradiance on the diffuser has
// zero curvature on the axis (maximally flat, like a Helmholtz pair), so the Lambertian diffuser is
// evenly bright wherever the lens can see it.
led_circle_r = (ring_od + ring_id) / 4;
ring_to_diffuser = led_circle_r * sqrt((led_emission_m + 3) / 2);
tube_id = ring_od + 2 * ring_fit;
tube_od = tube_id + 2 * tube_wall;
flange_d = tube_od + 14;
retainer_od = tube_od + 2 * clearance + 2 * wall;
retainer_skirt = 4.0;

// z chain, bottom up (assembly frame)
z_led = base_t + tube_floor_t + ring_pcb_t + ring_led_h;               // emitting face of the LEDs
z_diffuser = z_led + ring_to_diffuser;                                 // underside of the diffuser
tube_h = z_diffuser - base_t;
z_retainer_top = z_diffuser + diffuser_t + retainer_t;
z_platform_bottom = z_retainer_top + z_gap + z_travel_down;            // at the nominal focus
z_slider_bottom = z_platform_bottom + platform_t;
z_tray_bottom = z_slider_bottom + slider_t;
z_tray_top = z_tray_bottom + tray_t;
z_sample = z_tray_top + slide_proud;                                   // top face of the slide
z_lens_front = z_sample + sample_gap;                                  // front vertex of the lens
z_lens_barrel_bottom = z_lens_front - lens_vertex_recess;
z_clamp_bottom = z_lens_barrel_bottom - lens_lip_t;                    // = top of the stage frame
frame_h = z_clamp_bottom;
clamp_plate_t = max(4.0, camera_island_h + lens_window_gap + lens_barrel_len + lens_lip_t);
z_phone_back = z_clamp_bottom + clamp_plate_t;
z_camera_window = z_phone_back - camera_island_h;
diffuser_to_sample = z_sample - z_diffuser;
lens_clearance_at_top = z_clamp_bottom - (z_sample + coverslip_t) - z_travel_up;

// stage plan (xy)
tray_dx = slide_w + 2 * tray_margin_x;
tray_dy = slide_d + 2 * tray_margin_y;
tray_window_x = slide_w - 2 * tray_ledge_x;
tray_window_y = slide_d - 2 * tray_ledge_y;
// radius of the cone of light the lens accepts, at a depth d below the sample
function cone_r(d) = fov_d / 2 + d * tan(asin(objective_na));
ys_x0 = -(tray_dx / 2 + x_travel + clearance);                         // x slider span without the y tab
ys_x1 = tray_dx / 2 + x_travel + clearance + block_w;
ys_xmin = ys_x0 - ytab_w;
ys_dy = tray_dy + 2 * clearance + 2 * rail_w;
pf_xmin = ys_xmin - clearance - rail_w;
pf_xmax = ys_x1 + clearance + rail_w;
pf_front = -(ys_dy / 2 + y_travel + clearance + block_w);
pf_back = ys_dy / 2 + y_travel + spring_gap;                           // front face of the z carriage block
y_wall_front = pf_back + zc_block_d + clearance;
y_frame_back = y_wall_front + wall_t;
ear_x = dt_w_face / 2 + 12;
y_ear = pf_back + zc_block_d / 2;
zc_block_top = frame_h - z_travel_up - 1.0;                            // stays below the clamp at full travel
zc_block_h = zc_block_top - z_platform_bottom;
base_front = flange_d / 2 + 3;
// housing screws through the frame base (stage_frame.scad, housing.scad)
function housing_screw_xy() = [
    [-(frame_w / 2 - 5), -base_front + 5], [frame_w / 2 - 5, -base_front + 5],
    [-(frame_w / 2 - 5), y_wall_front - 5], [frame_w / 2 - 5, y_ear - knob_d / 2 - 7]];
// screw lengths for the bill of materials (knob + lock nut + travel + thread engagement)
x_screw_len = knob_t + nut_t + block_w + 2 * x_travel + 2 * clearance + 8;
y_screw_len = knob_t + nut_t + block_w + 2 * y_travel + 2 * clearance + ytab_w;
z_screw_len = knob_t + base_t + nut_t + (z_platform_bottom - base_t) + z_travel_up + 6;

// ================================================================ design checks
assert(lens_working_distance > 0, "lens_principal_depth must be smaller than lens_focal_length");
assert(lens_clearance_at_top >= min_lens_clearance,
       str("the clamp would hit the cover glass at full focus travel (clearance ", lens_clearance_at_top,
           " mm): use a lens with a longer working distance or reduce z_travel_up"));
assert(z_travel_up >= 1.0 && z_travel_down >= 1.0, "focus travel must be at least ±1 mm");
assert(tray_window_x / 2 >= x_travel + cone_r(tray_t + slide_proud), "tray window too short for x travel");
assert(tray_window_y / 2 >= y_travel + cone_r(tray_t + slide_proud), "tray window too narrow for y travel");
assert(tube_id / 2 >= cone_r(diffuser_to_sample),
       "diffuser aperture smaller than the cone the lens accepts: the field would not be evenly lit");
assert(lens_clear_d < lens_barrel_d, "lens_clear_d must be smaller than lens_barrel_d");
assert(camera_island_w < phone_width && camera_island_l < phone_length, "camera island larger than the phone");
