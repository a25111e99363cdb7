using QanaEdge.Daemon.Configuration;
using QanaEdge.Daemon.Power;
using QanaEdge.Devices.Hwmon;
using QanaEdge.Devices.Ina219;
using QanaEdge.Devices.Ina236;
using QanaEdge.Devices.Power;
using QanaEdge.TestSupport;

namespace QanaEdge.Daemon.Tests.Devices;

public sealed class PowerSensorTests
{
    [Fact]
    public void Ina219_datasheet_example_calibration_and_readings()
    {
        // Datasheet 8.5.1 example: R_shunt 0.5 Ω, MaxExpected_I 0.6 A → Minimum_LSB = 0.6 / 2^15 = 18.31 µA,
        // Cal = trunc(0.04096 / (18.31 µA × 0.5 Ω)) = 4473, stored even (bit 0 reads 0): 4472.
        var chip = new SimulatedIna219();
        using var sensor = new Ina219PowerSensor(chip, shuntOhms: 0.5, maxCurrentAmps: 0.6);
        Assert.Equal(4472, chip.Calibration);
        Assert.Equal(18.32e-6, sensor.CurrentLsbAmps, 8);
        // The start-up log line: 0.04096 / (4472 × 0.5 Ω) = 18.3184 µA.
        Assert.Equal("PGA /8 (shunt input ±320 mV in 10 µV steps), calibration 4472, current LSB 18.3184 µA", sensor.Calibration);
        chip.ShuntRaw = 1000;          // 10 mV across 0.5 Ω = 20 mA
        chip.BusSteps = 3000;          // 12.000 V
        PowerReading r = sensor.Read();
        Assert.Equal(12.0, r.BusVolts, 6);
        Assert.Equal(0.020, r.CurrentAmps, 4);   // within one current LSB of the truth
        Assert.Equal(0.24, r.PowerWatts, 3);
        Assert.Equal(0.010, sensor.ReadShuntVolts(), 9);
        Assert.Equal(0.020, sensor.ReadCurrentFromShunt(), 9);
    }

    /// <summary>A chip another program left at PGA /1 in power-down is configured as the sensor's range assumes.</summary>
    [Fact]
    public void Ina219_configuration_left_by_another_program_is_written_again()
    {
        var chip = new SimulatedIna219();
        chip.Write([0x00, 0x00, 0x00]);   // 16 V range, PGA /1, 9-bit ADCs, power-down
        using var sensor = new Ina219PowerSensor(chip, 0.1, 3.2);
        Span<byte> config = stackalloc byte[2];
        chip.WriteRead([0x00], config);
        Assert.Equal(Ina219PowerSensor.Configuration, (ushort)(config[0] << 8 | config[1]));
    }

    [Fact]
    public void Ina219_negative_current_reads_negative_and_0xFFFF_is_minus_one_lsb()
    {
        var chip = new SimulatedIna219();
        using var sensor = new Ina219PowerSensor(chip, 0.1, 3.2);
        chip.BusSteps = 1250; // 5 V
        chip.ShuntRaw = -1;   // register 0xFFFF
        Assert.Equal(-10e-6, sensor.ReadShuntVolts(), 12);
        Assert.Equal(-1e-4, sensor.ReadCurrentFromShunt(), 12);
        chip.ShuntRaw = -4000; // −40 mV across 0.1 Ω = −0.4 A
        PowerReading r = sensor.Read();
        Assert.Equal(-0.4, r.CurrentAmps, 3);
        Assert.True(r.PowerWatts < 0);
    }

    [Fact]
    public void A_chip_reset_by_a_brown_out_is_found_and_calibrated_again()
    {
        var ina219 = new SimulatedIna219();
        using (var sensor = new Ina219PowerSensor(ina219, 0.1, 3.2))
        {
            ina219.BusSteps = 1250; ina219.ShuntRaw = 4000; // 5 V, 40 mV across 0.1 Ω = 0.4 A
            Assert.Equal(0.4, sensor.Read().CurrentAmps, 3);
            ina219.Brownout();
            // Until the next check it reads 0 A; the check says so and programs the chip again.
            var e = Assert.Throws<PowerSensorException>(() => { for (int i = 0; i < Ina219PowerSensor.CalibrationCheckEvery; i++) sensor.Read(); });
            Assert.Contains("the chip was reset", e.Message);
            Assert.Equal(0.4, sensor.Read().CurrentAmps, 3);
        }
        var ina236 = new SimulatedIna236();
        using (var sensor = new Ina236PowerSensor(ina236, 0.008, 4.0))
        {
            ina236.BusSteps = 7500; ina236.ShuntRaw = 4000; // 12 V, 10 mV → 1.25 A
            Assert.Equal(1.25, sensor.Read().CurrentAmps, 2);
            ina236.Brownout();
            var e = Assert.Throws<PowerSensorException>(() => { for (int i = 0; i < Ina236PowerSensor.CalibrationCheckEvery; i++) sensor.Read(); });
            Assert.Contains("the chip was reset", e.Message);
            Assert.Equal(1.25, sensor.Read().CurrentAmps, 2);
        }
    }

    /// <summary>
    /// A brown-out often comes with a failed transfer. When the one that failed was the periodic read of the calibration
    /// register, the check was skipped until the next period, and the reset chip read 0 A without an error for another
    /// 255 reads (0.5 s at 2 ms), charged to the images of that time as power below idle.
    /// </summary>
    [Fact]
    public void A_calibration_check_that_fails_on_the_bus_is_made_again_at_the_next_read()
    {
        var ina219 = new SimulatedIna219();
        using (var sensor = new Ina219PowerSensor(ina219, 0.1, 3.2))
        {
            ina219.BusSteps = 1250; ina219.ShuntRaw = 4000; // 0.4 A
            Assert.Equal(0.4, sensor.Read().CurrentAmps, 3);
            ina219.Brownout();
            for (int i = 1; i < Ina219PowerSensor.CalibrationCheckEvery; i++) sensor.Read(); // 0 A, no error: the chip cannot tell
            ina219.FailNext = 1;
            Assert.Throws<IOException>(() => sensor.Read()); // the check's read
            var e = Assert.Throws<PowerSensorException>(() => sensor.Read());
            Assert.Contains("the chip was reset", e.Message);
            Assert.Equal(0.4, sensor.Read().CurrentAmps, 3);
        }
        var ina236 = new SimulatedIna236();
        using (var sensor = new Ina236PowerSensor(ina236, 0.008, 4.0))
        {
            ina236.BusSteps = 7500; ina236.ShuntRaw = 4000; // 1.25 A
            Assert.Equal(1.25, sensor.Read().CurrentAmps, 2);
            ina236.Brownout();
            for (int i = 1; i < Ina236PowerSensor.CalibrationCheckEvery; i++) sensor.Read();
            ina236.FailNext = 1;
            Assert.Throws<IOException>(() => sensor.Read());
            var e = Assert.Throws<PowerSensorException>(() => sensor.Read());
            Assert.Contains("the chip was reset", e.Message);
            Assert.Equal(1.25, sensor.Read().CurrentAmps, 2);
        }
    }

    [Fact]
    public void Ina219_refuses_a_current_range_the_shunt_cannot_carry()
    {
        var e = Assert.Throws<PowerSensorException>(() => new Ina219PowerSensor(new SimulatedIna219(), 0.1, 10));
        Assert.Contains("320 mV", e.Message);
    }

    /// <summary>
    /// The shunt input at PGA /8 is ±320 mV (datasheet table "PG Bit Settings"): 32000 steps of 10 µV in the shunt voltage
    /// register, though its 16 bits hold 32767. On 0.1 Ω, 3.2 A is 320 mV exactly and is accepted: step 2, 3.2 A / 2^15
    /// = 97.65625 µA; equation 1, trunc(0.04096 / (97.65625 µA × 0.1 Ω)) = trunc(4194.304) = 4194 (even); 32000 steps
    /// read 3.2 A from the shunt. 3.25 A (325 mV) and 3.2768 A (327.68 mV, the register's 32768 steps) are beyond the
    /// input and were accepted, reading clipped at 3.2 A.
    /// </summary>
    [Fact]
    public void Ina219_accepts_a_range_up_to_the_datasheets_320_mV_and_refuses_beyond()
    {
        var chip = new SimulatedIna219();
        using (var sensor = new Ina219PowerSensor(chip, 0.1, 3.2))
        {
            Assert.Equal(4194, chip.Calibration);
            chip.ShuntRaw = 32000;
            Assert.Equal(0.32, sensor.ReadShuntVolts(), 12);
            Assert.Equal(3.2, sensor.ReadCurrentFromShunt(), 12);
        }
        foreach ((double amps, string mv) in (ReadOnlySpan<(double, string)>)[(3.25, "325"), (3.2768, "327.68")])
        {
            var e = Assert.Throws<PowerSensorException>(() => new Ina219PowerSensor(new SimulatedIna219(), 0.1, amps));
            Assert.Contains($"is {mv} mV, beyond the shunt input's ±320 mV (PGA /8)", e.Message);
            Assert.Contains("currents above 3.2 A would read clipped", e.Message);
        }
    }

    /// <summary>
    /// A 10 mΩ shunt for 1 A (10 mV at full current, under the 20.48 mV where the calibration outgrows its register).
    /// Step 2: Minimum_LSB = 1 A / 2^15 = 30.517578125 µA; equation 1: Cal = trunc(0.04096 / (30.517578125 µA × 10 mΩ))
    /// = trunc(134217.728), beyond 0xFFFE. The finest LSB that fits is 0.04096 / (65534 × 10 mΩ) = 62.50190740684226 µA.
    /// 5 mV across the shunt (0.5 A) is 500 shunt steps; equation 4: trunc(500 × 65534 / 4096) = trunc(7999.7559) = 7999,
    /// × 62.50190740684226 µA = 0.4999527573473312 A; at 5 V, 2.499763786736656 W.
    /// </summary>
    [Fact]
    public void Ina219_a_small_shunt_gets_the_finest_current_lsb_the_calibration_register_holds()
    {
        var chip = new SimulatedIna219();
        using var sensor = new Ina219PowerSensor(chip, shuntOhms: 0.01, maxCurrentAmps: 1.0);
        Assert.Equal(0xFFFE, chip.Calibration);
        Assert.Equal(62.50190740684226e-6, sensor.CurrentLsbAmps, 15);
        chip.ShuntRaw = 500;
        chip.BusSteps = 1250;
        PowerReading r = sensor.Read();
        Assert.Equal(0.4999527573473312, r.CurrentAmps, 12);
        Assert.Equal(2.499763786736656, r.PowerWatts, 12);
        Assert.Equal(0.5, sensor.ReadCurrentFromShunt(), 12);
    }

    [Fact]
    public void Ina219_refuses_a_range_under_one_step_of_its_shunt_input()
    {
        // 5 mA through 1 mΩ is 5 µV, half of one 10 µV step: every current up to the maximum would read 0.
        var e = Assert.Throws<PowerSensorException>(() => new Ina219PowerSensor(new SimulatedIna219(), 0.001, 0.005));
        Assert.Contains("5 µV, under one step of the shunt input (10 µV)", e.Message);
    }

    /// <summary>
    /// Datasheet table 8-4's returned values on its 8 mΩ shunt: shunt voltage 19200 (× 2.5 µV = 48 mV), bus 7500
    /// (× 1.6 mV = 12 V), 6 A, 72 W. The datasheet rounds its current LSB up to 500 µA (SHUNT_CAL 1280); the sensor takes
    /// the finest for 8 A: equation 2, 8 A / 2^15 = 244.140625 µA; equation 1, SHUNT_CAL = trunc(0.00512 / (244.140625 µA
    /// × 8 mΩ)) = trunc(2621.44) = 2621, so Current_LSB = 0.00512 / (2621 × 8 mΩ) = 244.18161007249144 µA. The chip's
    /// current register, shunt × SHUNT_CAL / 2048: trunc(19200 × 2621 / 2048) = trunc(24571.875) = 24571, × Current_LSB
    /// = 5.999786341091187 A; × 12 V = 71.99743609309424 W.
    /// </summary>
    [Fact]
    public void Ina236_datasheet_readings_with_the_finest_current_lsb()
    {
        var chip = new SimulatedIna236();
        using var sensor = new Ina236PowerSensor(chip, 0.008, 8.0);
        Assert.Equal(0x4127, chip.Config);   // 64 mV at full current: ADCRANGE stays 0
        Assert.Equal(2621, chip.ShuntCal);
        Assert.Equal(244.18161007249144e-6, sensor.CurrentLsbAmps, 15);
        chip.ShuntRaw = 19200;
        chip.BusSteps = 7500;
        PowerReading r = sensor.Read();
        Assert.Equal(12.0, r.BusVolts, 9);
        Assert.Equal(5.999786341091187, r.CurrentAmps, 12);
        Assert.Equal(71.99743609309424, r.PowerWatts, 9);
        Assert.Equal(0.048, sensor.ReadShuntVolts(), 12);
    }

    /// <summary>
    /// Imax × R under 1.28 mV (ADCRANGE 1): equation 1 with equation 2's finest LSB, divided by 4, exceeds SHUNT_CAL's 15
    /// bits, so the sensor programs 0x7FFF, the finest LSB that fits, Current_LSB = 0.00128 / (32767 × R). (Before the
    /// sensor chose the range, ADCRANGE 0 gave 0.00512 / (32767 × R), four times coarser; before it calibrated the chip
    /// itself, the upstream binding's value was written unchecked: the chip dropped bit 15, or the binding threw.)
    /// <list type="bullet">
    /// <item>2 mΩ, 0.5 A (1 mV): 0.00128 / (0.5 A / 2^15 × 2 mΩ) = 41943.04 → 0x7FFF; LSB = 19.531846064638203 µA.
    /// 0.25 A is 0.5 mV, 800 steps of 625 nV: trunc(800 × 32767 / 2048) = trunc(12799.609375) = 12799 →
    /// 0.24998809778130437 A.</item>
    /// <item>1 mΩ, 0.5 A (0.5 mV): 83886.08 → 0x7FFF; LSB = 39.063692129276406 µA (ADCRANGE 0 gave 156.25 µA; the
    /// binding's 167772 did not fit 16 bits and it threw). 0.25 A is 0.25 mV, 400 steps: trunc(400 × 32767 / 2048) =
    /// trunc(6399.8046875) = 6399 → 0.24996856593523972 A.</item>
    /// </list>
    /// </summary>
    [Theory]
    [InlineData(0.002, 0.5, 19.531846064638203e-6, 800, 0.24998809778130437)]
    [InlineData(0.001, 0.5, 39.063692129276406e-6, 400, 0.24996856593523972)]
    public void Ina236_a_small_shunt_gets_the_finest_current_lsb_that_fits_in_15_bits(
        double shuntOhms, double maxCurrentAmps, double currentLsbAmps, short shuntRaw, double amps)
    {
        var chip = new SimulatedIna236();
        using var sensor = new Ina236PowerSensor(chip, shuntOhms, maxCurrentAmps);
        Assert.Equal(0x7FFF, chip.ShuntCal);
        Assert.Equal(currentLsbAmps, sensor.CurrentLsbAmps, 15);
        chip.ShuntRaw = shuntRaw;
        chip.BusSteps = 7500;
        Assert.Equal(amps, sensor.Read().CurrentAmps, 12);
        chip.ShuntRaw = (short)-shuntRaw;
        Assert.Equal(-amps, sensor.Read().CurrentAmps, 12);
    }

    /// <summary>
    /// 10 mΩ for 2 A: 20 mV at full current, within ADCRANGE 1's ±20.48 mV, so the sensor sets CONFIG bit 12 (0x4127 →
    /// 0x5127). Equation 2: Minimum_LSB = 2 A / 2^15 = 61.03515625 µA; equation 1: 0.00512 / (61.03515625 µA × 10 mΩ) =
    /// 8388.608, divided by 4 for ADCRANGE 1: 2097.152, so SHUNT_CAL = 2097 (ADCRANGE 0 took 8388), and Current_LSB =
    /// 0.00128 / (2097 × 10 mΩ) = 61.039580352885075 µA. 1.5 A is 15 mV: 24000 steps of 625 nV (6000 of 2.5 µV with
    /// ADCRANGE 0). The chip's current register, shunt × SHUNT_CAL / 2048: trunc(24000 × 2097 / 2048) =
    /// trunc(24574.21875) = 24574, × Current_LSB = 1.4999866475917978 A; × 12 V = 17.999839771101573 W. 0xFFFF in the
    /// shunt register is −625 nV.
    /// </summary>
    [Fact]
    public void Ina236_a_shunt_range_within_20_48_mV_takes_adcrange_1()
    {
        var chip = new SimulatedIna236();
        using var sensor = new Ina236PowerSensor(chip, 0.01, 2.0);
        Assert.Equal(0x5127, chip.Config);
        Assert.Equal(2097, chip.ShuntCal);
        Assert.Equal(61.039580352885075e-6, sensor.CurrentLsbAmps, 15);
        chip.ShuntRaw = 24000;
        chip.BusSteps = 7500;
        PowerReading r = sensor.Read();
        Assert.Equal(1.4999866475917978, r.CurrentAmps, 12);
        Assert.Equal(17.999839771101573, r.PowerWatts, 12);
        Assert.Equal(0.015, sensor.ReadShuntVolts(), 12);
        chip.ShuntRaw = -1;
        Assert.Equal(-625e-9, sensor.ReadShuntVolts(), 15);
        chip.ShuntRaw = -24000;
        Assert.Equal(-1.4999866475917978, sensor.Read().CurrentAmps, 12);
    }

    /// <summary>
    /// The boundary, on a 100 mΩ shunt:
    /// <list type="bullet">
    /// <item>0.2048 A is exactly 20.48 mV, ADCRANGE 1's full scale: CONFIG 0x5127. Equation 2: 0.2048 A / 2^15 = 6.25 µA;
    /// equation 1: 0.00512 / (6.25 µA × 100 mΩ) = 8192, divided by 4: SHUNT_CAL = 2048, Current_LSB 6.25 µA. 0.2 A is
    /// 20 mV, 32000 steps of 625 nV: trunc(32000 × 2048 / 2048) = 32000 → 0.2 A.</item>
    /// <item>0.2049 A is 20.49 mV, beyond it: CONFIG stays 0x4127. Equation 2: 0.2049 A / 2^15; equation 1:
    /// 0.00512 × 2^15 / (0.2049 A × 100 mΩ) = 8188.001952..., SHUNT_CAL = 8188, Current_LSB = 0.00512 / (8188 × 100 mΩ)
    /// = 6.253053248656571 µA. 20 mV is 8000 steps of 2.5 µV: trunc(8000 × 8188 / 2048) = trunc(31984.375) = 31984 →
    /// 0.19999765510503176 A.</item>
    /// </list>
    /// </summary>
    [Theory]
    [InlineData(0.2048, 0x5127, 2048, 6.25e-6, 32000, 0.2)]
    [InlineData(0.2049, 0x4127, 8188, 6.253053248656571e-6, 8000, 0.19999765510503176)]
    public void Ina236_adcrange_1_up_to_exactly_20_48_mV_and_0_beyond(
        double maxCurrentAmps, int config, int shuntCal, double currentLsbAmps, short shuntRaw, double amps)
    {
        var chip = new SimulatedIna236();
        using var sensor = new Ina236PowerSensor(chip, 0.1, maxCurrentAmps);
        Assert.Equal(config, chip.Config);
        Assert.Equal(shuntCal, chip.ShuntCal);
        Assert.Equal(currentLsbAmps, sensor.CurrentLsbAmps, 15);
        chip.ShuntRaw = shuntRaw;
        chip.BusSteps = 7500;
        Assert.Equal(amps, sensor.Read().CurrentAmps, 12);
        Assert.Equal(0.02, sensor.ReadShuntVolts(), 12);
    }

    /// <summary>What the daemon logs at start: the range the sensor chose, SHUNT_CAL and the current LSB (values as above).</summary>
    [Fact]
    public void Ina236_calibration_names_the_shunt_input_range()
    {
        using var narrow = new Ina236PowerSensor(new SimulatedIna236(), 0.1, 0.2048);
        Assert.Equal(Ina236AdcRange.Narrow, narrow.AdcRange);
        Assert.Equal("ADCRANGE 1 (shunt input ±20.48 mV in 0.625 µV steps), SHUNT_CAL 2048, current LSB 6.25 µA", narrow.Calibration);
        using var wide = new Ina236PowerSensor(new SimulatedIna236(), 0.008, 8.0);
        Assert.Equal(Ina236AdcRange.Wide, wide.AdcRange);
        Assert.Equal("ADCRANGE 0 (shunt input ±81.92 mV in 2.5 µV steps), SHUNT_CAL 2621, current LSB 244.1816 µA", wide.Calibration);
    }

    /// <summary>
    /// 2 mA through 1 mΩ is 2 µV: under one 2.5 µV step of ADCRANGE 0 (refused before) but over three of ADCRANGE 1's
    /// 625 nV. Equation 1 for ADCRANGE 1, 0.00128 × 2^15 / 2 µV = 20971520, is beyond 15 bits: SHUNT_CAL 0x7FFF,
    /// Current_LSB = 0.00128 / (32767 × 1 mΩ) = 39.063692129276406 µA. 1.25 mA is 1.25 µV, 2 steps:
    /// trunc(2 × 32767 / 2048) = trunc(31.9990234375) = 31 → 1.2109744560075686 mA.
    /// </summary>
    [Fact]
    public void Ina236_a_range_under_one_step_of_adcrange_0_is_measured_with_adcrange_1()
    {
        var chip = new SimulatedIna236();
        using var sensor = new Ina236PowerSensor(chip, 0.001, 0.002);
        Assert.Equal(0x5127, chip.Config);
        Assert.Equal(0x7FFF, chip.ShuntCal);
        Assert.Equal(39.063692129276406e-6, sensor.CurrentLsbAmps, 15);
        chip.ShuntRaw = 2;
        Assert.Equal(1.2109744560075686e-3, sensor.Read().CurrentAmps, 15);
        Assert.Equal(1.25e-6, sensor.ReadShuntVolts(), 15);
    }

    /// <summary>
    /// A reset puts ADCRANGE back to 0 with SHUNT_CAL, and another program may write CONFIG alone: either way the
    /// calibration for ADCRANGE 1 would read currents 4 times off, so the check finds it and programs the chip again.
    /// </summary>
    [Fact]
    public void Ina236_adcrange_1_lost_to_a_reset_or_a_rewritten_config_is_found_and_set_again()
    {
        var chip = new SimulatedIna236();
        using var sensor = new Ina236PowerSensor(chip, 0.01, 2.0);   // 20 mV: ADCRANGE 1, SHUNT_CAL 2097
        chip.BusSteps = 7500;
        chip.ShuntRaw = 24000;
        Assert.Equal(1.4999866475917978, sensor.Read().CurrentAmps, 12);
        chip.Brownout();
        Assert.Equal(0x4127, chip.Config);
        var e = Assert.Throws<PowerSensorException>(() => { for (int i = 0; i < Ina236PowerSensor.CalibrationCheckEvery; i++) sensor.Read(); });
        Assert.Contains("the chip was reset", e.Message);
        Assert.Equal(0x5127, chip.Config);
        Assert.Equal(2097, chip.ShuntCal);
        Assert.Equal(1.4999866475917978, sensor.Read().CurrentAmps, 12);

        chip.Write([0x00, 0x41, 0x27]);   // CONFIG back to ADCRANGE 0, SHUNT_CAL untouched
        e = Assert.Throws<PowerSensorException>(() => { for (int i = 0; i < Ina236PowerSensor.CalibrationCheckEvery; i++) sensor.Read(); });
        Assert.Contains("SHUNT_CAL read 0x0831 with ADCRANGE 0 instead of 0x0831 with ADCRANGE 1", e.Message);
        Assert.Equal(0x5127, chip.Config);
    }

    [Fact]
    public void Ina236_refuses_a_range_under_one_step_of_its_shunt_input()
    {
        // 0.5 mA through 1 mΩ is 0.5 µV, under one 625 nV step of ADCRANGE 1: every current up to the maximum would read 0.
        var e = Assert.Throws<PowerSensorException>(() => new Ina236PowerSensor(new SimulatedIna236(), 0.001, 0.0005));
        Assert.Contains("0.5 µV, under one step of the shunt input (0.625 µV)", e.Message);
    }

    [Fact]
    public void Ina236_calibration_and_signed_readings()
    {
        // 8 mΩ shunt, 4 A max. Equation 2: 4 A / 2^15 = 122.0703125 µA; equation 1: SHUNT_CAL = trunc(0.00512 /
        // (122.0703125 µA × 8 mΩ)) = trunc(5242.88) = 5242, Current_LSB = 0.00512 / (5242 × 8 mΩ) = 122.09080503624572 µA.
        var chip = new SimulatedIna236();
        using var sensor = new Ina236PowerSensor(chip, 0.008, 4.0);
        Assert.Equal(5242, chip.ShuntCal);
        Assert.Equal(122.09080503624572e-6, sensor.CurrentLsbAmps, 15);
        chip.BusSteps = 7500;  // 12.0 V
        chip.ShuntRaw = 4000;  // 10 mV → 1.25 A
        PowerReading r = sensor.Read();
        Assert.Equal(12.0, r.BusVolts, 6);
        Assert.Equal(1.25, r.CurrentAmps, 2);
        Assert.Equal(15.0, r.PowerWatts, 1);
        chip.ShuntRaw = -1;
        Assert.Equal(-2.5e-6, sensor.ReadShuntVolts(), 12);
        Assert.True(sensor.Read().CurrentAmps <= 0);
        chip.ShuntRaw = -4000;
        Assert.Equal(-1.25, sensor.Read().CurrentAmps, 2);
    }

    [Fact]
    public void Ina236_a_range_beyond_its_shunt_input_is_refused()
    {
        // 3.2 A through 0.1 Ω is 320 mV (an INA219's range); the INA236 reads ±81.92 mV and would clip above 0.82 A.
        var e = Assert.Throws<PowerSensorException>(() => new Ina236PowerSensor(new SimulatedIna236(), 0.1, 3.2));
        Assert.Contains("beyond the shunt input's ±81.92 mV", e.Message);
        Assert.Contains("0.819 A", e.Message);
        using var fits = new Ina236PowerSensor(new SimulatedIna236(), 0.02, 4.0); // 80 mV at full current
    }

    [Fact]
    public void Ina236_wrong_manufacturer_id_is_refused()
    {
        var e = Assert.Throws<PowerSensorException>(() => new Ina236PowerSensor(new NotAnIna(), 0.008, 4));
        Assert.Contains("manufacturer id", e.Message);
    }

    private sealed class NotAnIna() : I2cRegisterSimulator(1, 0x40);

    [Fact]
    public void Hwmon_ina226_and_ina3221_from_a_fake_sysfs_tree()
    {
        string root = Infrastructure.TestEnv.TempDir("hwmon");
        try
        {
            Directory.CreateDirectory(Path.Combine(root, "hwmon0"));
            File.WriteAllText(Path.Combine(root, "hwmon0", "name"), "cpu_thermal\n");
            string ina226 = Path.Combine(root, "hwmon1");
            Directory.CreateDirectory(ina226);
            File.WriteAllText(Path.Combine(ina226, "name"), "ina226\n");
            File.WriteAllText(Path.Combine(ina226, "in1_input"), "5012\n");    // mV
            File.WriteAllText(Path.Combine(ina226, "curr1_input"), "-350\n");  // mA, reverse
            File.WriteAllText(Path.Combine(ina226, "power1_input"), "1754200\n"); // µW (unsigned in the driver)
            File.WriteAllText(Path.Combine(ina226, "update_interval"), "2\n");
            string ina3221 = Path.Combine(root, "hwmon2");
            Directory.CreateDirectory(ina3221);
            File.WriteAllText(Path.Combine(ina3221, "name"), "ina3221\n");
            File.WriteAllText(Path.Combine(ina3221, "in2_input"), "3300\n");
            File.WriteAllText(Path.Combine(ina3221, "curr2_input"), "500\n");

            using var a = HwmonPowerSensor.Open(root, "ina226", 1);
            PowerReading r = a.Read();
            Assert.Equal(5.012, r.BusVolts, 9);
            Assert.Equal(-0.35, r.CurrentAmps, 9);
            Assert.Equal(-1.7542, r.PowerWatts, 9);
            Assert.Equal(TimeSpan.FromMilliseconds(2), a.UpdateInterval);

            using var b = HwmonPowerSensor.Open(root, "ina3221", 2);
            Assert.Equal(1.65, b.Read().PowerWatts, 9);
            Assert.Throws<PowerSensorException>(() => HwmonPowerSensor.Open(root, "ina3221", 3));
            Assert.Throws<PowerSensorException>(() => HwmonPowerSensor.Open(root, "ina219", 1));
            File.WriteAllText(Path.Combine(ina226, "curr1_input"), "garbage");
            Assert.Throws<PowerSensorException>(() => a.Read());
        }
        finally { Directory.Delete(root, recursive: true); }
    }
    /// <summary>An INA226's attribute files as the ina2xx driver writes them, in a folder hwmon1 of <paramref name="root"/>.</summary>
    private static string Ina226Files(string root, string bus, string current, string power)
    {
        string dir = Directory.CreateDirectory(Path.Combine(root, "hwmon1")).FullName;
        File.WriteAllText(Path.Combine(dir, "name"), "ina226\n");
        File.WriteAllText(Path.Combine(dir, "in1_input"), bus);
        File.WriteAllText(Path.Combine(dir, "curr1_input"), current);
        File.WriteAllText(Path.Combine(dir, "power1_input"), power);
        return dir;
    }

    /// <summary>
    /// The sampler reads the sensor every few milliseconds for the daemon's lifetime. Each read allocated the text of
    /// each attribute file (and the trimmed copy); past the first read, which opens the files, a read allocates nothing,
    /// and still sees each value the driver writes.
    /// </summary>
    [Fact]
    public void Hwmon_reads_allocate_nothing_after_the_first()
    {
        string root = Infrastructure.TestEnv.TempDir("hwmon-alloc");
        try
        {
            string dir = Ina226Files(root, "5012\n", "-350\n", "1754200\n");
            using var sensor = HwmonPowerSensor.Open(root, "ina226", 1);
            PowerReading first = sensor.Read();
            PowerReading last = default;
            long allocated = Allocations.OnThisThread(() =>
            {
                for (int i = 0; i < 1000; i++) last = sensor.Read();
            });
            Assert.Equal(0, allocated);
            Assert.Equal(first, last);
            Assert.Equal(5.012, last.BusVolts, 9);
            Assert.Equal(-0.35, last.CurrentAmps, 9);
            Assert.Equal(-1.7542, last.PowerWatts, 9);

            // The driver's next values, longer and shorter than the last, through the files kept open.
            File.WriteAllText(Path.Combine(dir, "in1_input"), "12016\n");
            File.WriteAllText(Path.Combine(dir, "curr1_input"), "7\n");
            File.WriteAllText(Path.Combine(dir, "power1_input"), "84112\n");
            PowerReading next = sensor.Read();
            Assert.Equal(12.016, next.BusVolts, 9);
            Assert.Equal(0.007, next.CurrentAmps, 9);
            Assert.Equal(0.084112, next.PowerWatts, 9);
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    /// <summary>
    /// A device that goes away (its driver unbound: the kernel fails reads of its open files, and its files are gone)
    /// fails each read with a <see cref="PowerSensorException"/> while it is gone, and reads again once its files are
    /// back: the files are opened again after a failed read, as a rebound driver makes new ones.
    /// </summary>
    [Fact]
    public void Hwmon_a_device_that_goes_away_fails_its_reads_until_it_is_back()
    {
        string root = Infrastructure.TestEnv.TempDir("hwmon-gone");
        try
        {
            string dir = Ina226Files(root, "5012\n", "350\n", "1754200\n");
            using var sensor = HwmonPowerSensor.Open(root, "ina226", 1);
            Assert.Equal(1.7542, sensor.Read().PowerWatts, 9);

            File.WriteAllText(Path.Combine(dir, "curr1_input"), "-");
            var e = Assert.Throws<PowerSensorException>(() => sensor.Read());
            Assert.Contains("curr1_input holds '-', not an integer", e.Message);
            File.WriteAllText(Path.Combine(dir, "curr1_input"), "12345678901234567890123456789012345\n");
            Assert.Throws<PowerSensorException>(() => sensor.Read());

            Directory.Delete(dir, recursive: true);
            e = Assert.Throws<PowerSensorException>(() => sensor.Read());
            Assert.Contains("cannot read", e.Message);
            Assert.Throws<PowerSensorException>(() => sensor.Read());

            Ina226Files(root, "4990\n", "200\n", "998000\n");
            PowerReading back = sensor.Read();
            Assert.Equal(4.99, back.BusVolts, 9);
            Assert.Equal(0.2, back.CurrentAmps, 9);
            Assert.Equal(0.998, back.PowerWatts, 9);
        }
        finally { Directory.Delete(root, recursive: true); }
    }
    /// <summary>
    /// A sensor that cannot be opened is named in the error (the log's POWER line and the status's power_error) by what its
    /// kind tried: an hwmon chip by its name, channel and root, an INA by its I2C bus and address. An hwmon lookup that
    /// failed on an I/O error named the I2C bus and address of the options, which the kernel driver's sensor does not use.
    /// Here the INA226's update_interval fails its read with EIO (a link to /proc/self/mem, whose offset 0 is unmapped).
    /// </summary>
    [Fact]
    public void A_sensor_that_cannot_be_opened_is_named_by_what_its_kind_tried()
    {
        string root = Infrastructure.TestEnv.TempDir("hwmon-eio");
        try
        {
            string dir = Ina226Files(root, "5000\n", "400\n", "2000000\n");
            File.CreateSymbolicLink(Path.Combine(dir, "update_interval"), "/proc/self/mem");
            var hwmon = new PowerOptions { Sensor = PowerSensorKind.Hwmon, HwmonRoot = root, HwmonChip = "ina226", HwmonChannel = 1, I2cBus = 7, I2cAddress = 0x45 };
            var e = Assert.Throws<PowerSensorException>(() => PowerSetup.Open(hwmon));
            Assert.IsAssignableFrom<IOException>(e.InnerException);
            Assert.StartsWith($"power sensor Hwmon 'ina226' channel 1 under {root}: ", e.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("i2c-", e.Message, StringComparison.Ordinal);

            // No /dev/i2c-250 here: the INA219 is named by its bus and address.
            var ina219 = new PowerOptions { Sensor = PowerSensorKind.Ina219, I2cBus = 250, I2cAddress = 0x45, HwmonRoot = root };
            e = Assert.Throws<PowerSensorException>(() => PowerSetup.Open(ina219));
            Assert.StartsWith("power sensor Ina219 on i2c-250:0x45: ", e.Message, StringComparison.Ordinal);
            Assert.DoesNotContain(root, e.Message, StringComparison.Ordinal);
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    /// <summary>
    /// /sys/class/hwmon holds symbolic links (hwmon2 -> ../../devices/.../hwmon/hwmon2), not folders: the sensor is found
    /// through them, as on a board.
    /// </summary>
    [Fact]
    public void Hwmon_devices_are_found_through_the_class_folders_symbolic_links()
    {
        string root = Infrastructure.TestEnv.TempDir("hwmon-links");
        try
        {
            string device = Path.Combine(root, "devices", "platform", "soc", "i2c-1", "1-0040", "hwmon");
            Ina226Files(device, "5000\n", "400\n", "2000000\n");
            string hwmonClass = Directory.CreateDirectory(Path.Combine(root, "class", "hwmon")).FullName;
            Directory.CreateSymbolicLink(Path.Combine(hwmonClass, "hwmon1"), "../../devices/platform/soc/i2c-1/1-0040/hwmon/hwmon1");
            using var sensor = HwmonPowerSensor.Open(hwmonClass, "ina226", 1);
            Assert.Equal(2.0, sensor.Read().PowerWatts, 9);
        }
        finally { Directory.Delete(root, recursive: true); }
    }
}
