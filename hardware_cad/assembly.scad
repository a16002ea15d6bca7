// The whole microscope in place, for checking fits on screen (F5 in the OpenSCAD GUI).  Not printed.
// The parts are included (not `use`d) so that -D overrides reach every part.
ASSEMBLY = true;
include <params.scad>
include <phone_clamp.scad>
include <stage_frame.scad>
include <stage_z.scad>
include <stage_y.scad>
include <sample_tray.scad>
include <ring_holder.scad>
include <diffuser_retainer.scad>
include <housing.scad>
include <knob.scad>

focus = 0;                   // focus offset from the nominal focus, mm (-z_travel_down .. z_travel_up)
x_pos = 0;                   // tray position, mm
y_pos = 0;

color("dimgray") translate([0, 0, -housing_h]) housing();
color("lightgray") stage_frame();
color("black") translate([0, 0, base_t]) ring_holder();
color("white", 0.6) translate([0, 0, z_diffuser]) cylinder(d = tube_od, h = diffuser_t);
color("black") translate([0, 0, z_diffuser + diffuser_t + retainer_t]) mirror([0, 0, 1]) diffuser_retainer();
color("steelblue") translate([0, 0, z_platform_bottom + focus]) stage_z();
color("skyblue") translate([0, y_pos, z_slider_bottom + focus]) stage_y();
color("orange") translate([x_pos, y_pos, z_tray_bottom + focus]) sample_tray();
color("azure", 0.5) translate([x_pos - slide_w / 2, y_pos - slide_d / 2, z_sample + focus - slide_t])
    cube([slide_w, slide_d, slide_t]);
color("darkslategray") translate([0, 0, z_clamp_bottom]) phone_clamp();
color("gold") translate([0, 0, z_lens_barrel_bottom]) cylinder(d = lens_barrel_d, h = lens_barrel_len);
color("red") translate([0, 0, z_led]) cylinder(d = 0.5, h = z_lens_front - z_led);   // optical axis
color("silver") translate([ear_x, y_ear, -knob_t]) knob();
