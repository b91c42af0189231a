# F6: Relative weight change √h ‖w - w_0‖ / ‖w_0‖ (fc softplus L=5 mnist n=5000 hinge mu=1000) (written by lazyfeat report; data inline)
set encoding utf8
$P0S0 << EOD
0.001 5.376043798 0.06727076329
0.0022 4.529239188 0.04335334884
0.0046 3.91098133 0.03096606317
0.01 3.308791564 0.02256209777
0.022 2.778457828 0.007091571243
0.046 2.328466179 0.01711537255
0.1 1.927880162 0.01394819797
0.22 1.588344918 0.02685279376
1 1.048340241 0.03639841887
10 0.4605396501 0.02360995815
100 0.07513834405 0.002197637759
1000 0.00795736007 0.0007079549309
EOD
$P1S0 << EOD
0.01 5.376043798 0.06727076329
0.022 4.529239188 0.04335334884
0.046 3.91098133 0.03096606317
0.1 3.308791564 0.02256209777
0.22 2.778457828 0.007091571243
0.46 2.328466179 0.01711537255
1 1.927880162 0.01394819797
2.2 1.588344918 0.02685279376
10 1.048340241 0.03639841887
100 0.4605396501 0.02360995815
1000 0.07513834405 0.002197637759
10000 0.00795736007 0.0007079549309
EOD
set terminal pngcairo enhanced size 1120,440 font 'DejaVu Sans,10'
set output "/work/main/docs/results.new/F6.png"
set multiplot layout 1,2
unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'
set title "vs α"
set xlabel "α"
set ylabel "√h ‖w - w_0‖ / ‖w_0‖"
set logscale x; set format x '10^{%L}'
set logscale y; set format y '10^{%L}'
set key inside top right font ',8' spacing 0.9 samplen 2
set grid lw 0.5 lc rgb '#dddddd'
plot $P0S0 using 1:2:3 with yerrorlines lt 1 pt 1 ps 0.7 title "h=100"
unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'
set title "vs √h α"
set xlabel "√h α"
set ylabel "√h ‖w - w_0‖ / ‖w_0‖"
set logscale x; set format x '10^{%L}'
set logscale y; set format y '10^{%L}'
set key inside top right font ',8' spacing 0.9 samplen 2
set grid lw 0.5 lc rgb '#dddddd'
plot $P1S0 using 1:2:3 with yerrorlines lt 1 pt 1 ps 0.7 title "h=100"
unset multiplot
set terminal svg enhanced size 1120,440 font 'DejaVu Sans,10' background '#ffffff'
set output "/work/main/docs/results.new/F6.svg"
set multiplot layout 1,2
unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'
set title "vs α"
set xlabel "α"
set ylabel "√h ‖w - w_0‖ / ‖w_0‖"
set logscale x; set format x '10^{%L}'
set logscale y; set format y '10^{%L}'
set key inside top right font ',8' spacing 0.9 samplen 2
set grid lw 0.5 lc rgb '#dddddd'
plot $P0S0 using 1:2:3 with yerrorlines lt 1 pt 1 ps 0.7 title "h=100"
unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'
set title "vs √h α"
set xlabel "√h α"
set ylabel "√h ‖w - w_0‖ / ‖w_0‖"
set logscale x; set format x '10^{%L}'
set logscale y; set format y '10^{%L}'
set key inside top right font ',8' spacing 0.9 samplen 2
set grid lw 0.5 lc rgb '#dddddd'
plot $P1S0 using 1:2:3 with yerrorlines lt 1 pt 1 ps 0.7 title "h=100"
unset multiplot
unset output
